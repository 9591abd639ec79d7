package cluster

import (
	"encoding/json"
	"hash/fnv"
	"slices"
)

// memberRecord is the value of a member's key in MembersBucket.
type memberRecord struct {
	Node string `json:"node"`
	// Nonce tells this node's incarnations apart.
	Nonce string `json:"nonce"`
	// Leases are the lease names this member contends for.
	Leases []string          `json:"leases,omitempty"`
	Info   map[string]string `json:"info,omitempty"`
	// rev is the entry's revision when read (not stored): a member whose
	// revision stops changing has stopped heartbeating.
	rev uint64
}

func (r memberRecord) encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

func decodeMember(b []byte) (memberRecord, error) {
	var r memberRecord
	err := json.Unmarshal(b, &r)
	return r, err
}

// leaseRecord is the value of a lease's key in LeasesBucket.
type leaseRecord struct {
	Holder string `json:"holder"`
	Nonce  string `json:"nonce"`
	// Epoch is the revision of the acquiring write; 0 in that write
	// itself, which cannot know its own revision.
	Epoch uint64 `json:"epoch"`
	// Sent is the holder's monotonic clock when it sent this write, in
	// nanoseconds since its Manager started (0 from older versions): it
	// lets an observer bound when a write it saw late was sent.
	Sent int64 `json:"sent,omitempty"`
}

func (r leaseRecord) encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// epoch is the lease's epoch given the revision its record was read at.
func (r leaseRecord) epoch(rev uint64) uint64 {
	if r.Epoch == 0 {
		return rev
	}
	return r.Epoch
}

func decodeLease(b []byte) (leaseRecord, error) {
	var r leaseRecord
	err := json.Unmarshal(b, &r)
	return r, err
}

// desired is the rendezvous-hash winner for lease name among the live
// members that contend for it: the member with the highest hash of
// (name, member). Adding or removing a member moves only the leases it
// wins or held. Empty when no live member wants the lease.
func desired(name string, live []memberRecord) string {
	var best string
	var bestScore uint64
	for _, m := range live {
		if !slices.Contains(m.Leases, name) {
			continue
		}
		if s := score(name, m.Node); best == "" || s > bestScore || (s == bestScore && m.Node < best) {
			best, bestScore = m.Node, s
		}
	}
	return best
}

func score(name, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's low bits mix poorly for short similar keys: finish with a
	// 64-bit avalanche (the splitmix64 finaliser).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
