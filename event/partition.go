package event

import "hash/fnv"

// Partition maps a user key to one of n partitions with a stable hash
// (FNV-1a, 32 bit), so every event of a user lands on the same partition
// subject across restarts and versions. n must be positive.
func Partition(userKey string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(userKey))
	return int(h.Sum32() % uint32(n))
}
