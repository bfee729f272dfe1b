// Package shard is maddr's one convention for splitting a job over
// machines and putting the parts back together: "--shard i/n" names part i
// of n counted from 1 (1 <= i <= n), for scoring ('maddr score') and for
// experiments ('maddr experiment') alike. A job array that counts from 0
// (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX, a Slurm array from 0)
// passes $((INDEX+1))/n.
//
// Counting from 1 won because it is what the experiment flags, their docs
// and the paper-reproduction scripts already said, and because "shard 8/8"
// reads as the last of eight to anyone.
package shard

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Shard is part Index (from 1) of Count parts of a job. The zero value, like
// any Count of 1, is the whole job.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Parse reads "i/n" with 1 <= i <= n; "" is the whole job.
func Parse(s string) (Shard, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Shard{}, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return Shard{}, fmt.Errorf("shard %q: want i/n with 1 <= i <= n, e.g. 2/8 (for a job array counting from 0, pass $((ID+1))/n)", s)
	}
	return Shard{Index: i, Count: n}, nil
}

// Whole tells whether s is the whole job.
func (s Shard) Whole() bool { return s.Count <= 1 }

// String is "i/n", or "all" for the whole job.
func (s Shard) String() string {
	if s.Whole() {
		return "all"
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// OwnsPosition tells whether the k-th item (from 0) of a list every shard
// builds the same way belongs to s: items k with k mod n = i-1.
func (s Shard) OwnsPosition(k int) bool { return s.Whole() || k%s.Count == s.Index-1 }

// OwnsKey tells whether the item named key belongs to s: a stable hash
// (FNV-1a) of the name, so the partition depends on nothing but the names.
func (s Shard) OwnsKey(key string) bool {
	if s.Whole() {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64()%uint64(s.Count)) == s.Index-1
}

// Missing lists the parts of an n-part job that are not in seen.
func Missing(seen map[int]bool, n int) []Shard {
	var out []Shard
	for i := 1; i <= n; i++ {
		if !seen[i] {
			out = append(out, Shard{Index: i, Count: n})
		}
	}
	return out
}

// Union is the merge both 'maddr merge' and 'maddr experiment merge' do:
// it concatenates the items of several shard outputs, in order, keeping the
// first item of each key. For every later item whose key is already taken
// it calls again(first, later): an error refuses the merge (score shards
// must not overlap), nil drops the later copy (an experiment shard run
// twice).
func Union[T any](outputs [][]T, key func(T) string, again func(first, later T) error) ([]T, error) {
	taken := map[string]T{}
	var out []T
	for _, items := range outputs {
		for _, it := range items {
			k := key(it)
			if first, dup := taken[k]; dup {
				if err := again(first, it); err != nil {
					return nil, err
				}
				continue
			}
			taken[k] = it
			out = append(out, it)
		}
	}
	return out, nil
}
