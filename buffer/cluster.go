package buffer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

// ClusterConfig is the cluster section of the configuration: the embedded
// NATS server joins its peers over routes and JetStream runs clustered
// (replicated streams and KV buckets). Disabled (the default), clickpipe is
// one node exactly as before.
type ClusterConfig struct {
	// Enabled turns cluster mode on.
	Enabled bool `mapstructure:"enabled"`
	// Name is the NATS cluster name; every node of one cluster uses the same.
	Name string `mapstructure:"name"`
	// NodeName is this node's stable name (the NATS server name and the
	// JetStream peer identity). Never reuse the name of a node whose data
	// directory was lost: its peers would take it for the old one.
	NodeName string `mapstructure:"node_name"`
	// Listen is the route listener, host:port.
	Listen string `mapstructure:"listen"`
	// Advertise is the host:port peers should dial, when it differs from
	// Listen (NAT, containers). Empty: Listen.
	Advertise string `mapstructure:"advertise"`
	// Routes are the peers' route URLs (nats-route://host:port); listing
	// this node's own route is harmless. A DNS name that resolves to
	// several addresses is dialled at each of them.
	Routes []string `mapstructure:"routes"`
	// Replicas is the replication factor of every stream and KV bucket;
	// 0 means 3 when enabled and 1 otherwise.
	Replicas int `mapstructure:"replicas"`
	// LeaseTTL is how long a lease outlives its holder's last renewal
	// (lake writer, partitions). Holders renew every sixth of it and stop
	// themselves at two thirds without a renewal, so two thirds of it must
	// outlast an election of the leases bucket (NATS Raft: 4-9 s after its
	// leader goes silent), or holders stop during every election.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// JoinTimeout bounds how long start-up waits for a JetStream quorum
	// (a meta leader and the streams available).
	JoinTimeout time.Duration `mapstructure:"join_timeout"`
	// PartitionOwnership gives each partition one sessionizer in the
	// cluster (lease partition-<p>) instead of one on every node. Off:
	// every node sessionizes every partition (docs/cluster.md).
	PartitionOwnership bool `mapstructure:"partition_ownership"`
}

// DefaultClusterConfig is cluster mode off, with the documented defaults
// for when it is turned on.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{Name: "clickpipe", LeaseTTL: 15 * time.Second, JoinTimeout: 2 * time.Minute}
}

// StreamReplicas is the replication factor of streams and KV buckets.
func (c ClusterConfig) StreamReplicas() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case c.Enabled:
		return 3
	}
	return 1
}

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Validate names the offending cluster.* keys.
func (c ClusterConfig) Validate() error {
	var errs []error
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster.replicas: %d is outside 0..5", c.Replicas))
	}
	if !c.Enabled {
		if c.Replicas > 1 {
			errs = append(errs, fmt.Errorf("cluster.replicas: %d needs cluster.enabled: true", c.Replicas))
		}
		if c.PartitionOwnership {
			errs = append(errs, errors.New("cluster.partition_ownership: needs cluster.enabled: true"))
		}
		return errors.Join(errs...)
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("cluster.lease_ttl: %s is below 1s", c.LeaseTTL))
	}
	if c.JoinTimeout < time.Second {
		errs = append(errs, fmt.Errorf("cluster.join_timeout: %s is below 1s", c.JoinTimeout))
	}
	if !nodeNameRE.MatchString(c.NodeName) {
		errs = append(errs, fmt.Errorf("cluster.node_name: %q must be 1-64 letters, digits, '-' or '_' when clustered", c.NodeName))
	}
	if !nodeNameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("cluster.name: %q must be 1-64 letters, digits, '-' or '_'", c.Name))
	}
	if _, port, err := splitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("cluster.listen: %w", err))
	} else if port == 0 {
		errs = append(errs, fmt.Errorf("cluster.listen: %q needs a fixed port: peers dial it", c.Listen))
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("cluster.advertise: %w", err))
		}
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("cluster.routes: at least one peer route is needed when clustered"))
	}
	if _, err := c.routeURLs(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", hp, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port %q is not a number in 0..65535", hp, port)
	}
	return host, p, nil
}

func (c ClusterConfig) routeURLs() ([]*url.URL, error) {
	var out []*url.URL
	for i, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats") {
			return nil, fmt.Errorf("cluster.routes[%d]: %q is not a nats-route://host:port URL", i, r)
		}
		out = append(out, u)
	}
	return out, nil
}
