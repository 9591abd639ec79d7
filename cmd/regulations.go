package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/regulation"
)

// regulationsFlags are the options every `clickpipe regulations` command
// shares.
type regulationsFlags struct {
	url, token, dataDir string
	json                bool
}

// newRegulationsCmd is `clickpipe regulations create|get|list`: the
// regulations API (docs/api.md, docs/privacy.md) from the command line.
func newRegulationsCmd() *cobra.Command {
	f := &regulationsFlags{}
	c := &cobra.Command{
		Use:   "regulations",
		Short: "Delete or suppress users, and follow the requests (regulations API)",
		Long: `regulations talks to /v1/regulations on the query listener of a running clickpipe
with an admin token: --token, else $CLICKPIPE_ADMIN_TOKEN, else the development token a
local serve keeps in <data dir>/dev-admin-token. docs/privacy.md explains what each type
does and when it is done.

Examples:
  clickpipe regulations create --type suppress_with_delete user-42 anon-9f1
  clickpipe regulations get reg_4b1d…
  clickpipe regulations list`,
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&f.url, "url", "http://127.0.0.1:8081", "query listener base URL")
	c.PersistentFlags().StringVar(&f.token, "token", "", "admin token (default $CLICKPIPE_ADMIN_TOKEN)")
	c.PersistentFlags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where a local serve keeps its development token (default $CLICKPIPE_DATA_DIR or ./data)")
	c.PersistentFlags().BoolVar(&f.json, "json", false, "print the API's JSON")
	c.PersistentPreRun = func(*cobra.Command, []string) {
		f.token = firstNonEmpty(f.token, os.Getenv("CLICKPIPE_ADMIN_TOKEN"), devCredential(f.dataDir, "dev-admin-token"))
	}
	var typ, id string
	create := &cobra.Command{
		Use:   "create --type TYPE USER_ID...",
		Short: "Request a suppress, delete, suppress_with_delete or unsuppress of user ids",
		Long: `create stores a regulation for the user ids (userId or anonymousId; ids linked to them by
identity stitching are added). The same type and ids (or the same --id) is the same
regulation, so a retry is safe.

Example:
  clickpipe regulations create --type delete user-42`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			body, _ := json.Marshal(regulation.Request{ID: id, Type: typ, UserIDs: args})
			return f.call(c.Context(), c.OutOrStdout(), http.MethodPost, "/v1/regulations", body, printRegulation)
		},
	}
	create.Flags().StringVar(&typ, "type", "", "suppress, delete, suppress_with_delete or unsuppress")
	create.Flags().StringVar(&id, "id", "", "your id for the request (default: derived from type and ids)")
	_ = create.MarkFlagRequired("type")
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show one regulation with its per-store progress",
		Long: `get prints a regulation: its ids, who asked and when, each store's progress and the
final status.

Example:
  clickpipe regulations get reg_4b1d…`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return f.call(c.Context(), c.OutOrStdout(), http.MethodGet, "/v1/regulations/"+url.PathEscape(args[0]), nil, printRegulation)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every regulation, newest first",
		Long: `list prints one line per regulation: id, type, status, creation time, who asked and
how many ids it covers.

Example:
  clickpipe regulations list --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return f.call(c.Context(), c.OutOrStdout(), http.MethodGet, "/v1/regulations", nil, printRegulations)
		},
	}
	c.AddCommand(create, get, list)
	return c
}

// call sends one request and prints the answer (raw with --json).
func (f *regulationsFlags) call(ctx context.Context, out io.Writer, method, path string, body []byte,
	print func(io.Writer, []byte) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := apiCall(ctx, http.DefaultClient, method, strings.TrimSuffix(f.url, "/")+path, f.token, body)
	if err != nil {
		return fmt.Errorf("regulations: %w", err)
	}
	if f.json {
		_, err := out.Write(b)
		return err
	}
	return print(out, b)
}

func printRegulation(out io.Writer, b []byte) error {
	var reg regulation.Regulation
	if err := json.Unmarshal(b, &reg); err != nil {
		return fmt.Errorf("regulations: decoding the answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\ntype\t%s\nstatus\t%s\nrequested by\t%s\ncreated\t%s\n", reg.ID, reg.Type, reg.Status,
		reg.RequestedBy, reg.Created.Format(time.RFC3339))
	if !reg.Completed.IsZero() {
		fmt.Fprintf(tw, "completed\t%s\n", reg.Completed.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "user ids\t%s\n", strings.Join(reg.UserIDs, " "))
	for _, s := range regulation.Stores {
		if p, ok := reg.Stores[s]; ok {
			fmt.Fprintf(tw, "store %s\t%s (found %d, removed %d) %s\n", s, p.Status, p.Found, p.Removed, p.Detail)
		}
	}
	return tw.Flush()
}

func printRegulations(out io.Writer, b []byte) error {
	var list struct {
		Regulations []regulation.Regulation `json:"regulations"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("regulations: decoding the answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tCREATED\tREQUESTED BY\tIDS")
	for _, r := range list.Regulations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", r.ID, r.Type, r.Status, r.Created.Format(time.RFC3339), r.RequestedBy, len(r.UserIDs))
	}
	return tw.Flush()
}
