package score

import (
	"fmt"
	"sort"
	"strings"
)

// unitKey is the unit a result belongs to (the volume or series, else the
// file), the grain at which shards partition a job.
func unitKey(r Result) string {
	if r.Volume != "" {
		return r.Volume
	}
	return r.Path
}

// MergeOptions relax Merge's checks.
type MergeOptions struct {
	// Partial accepts a job with shards missing (their inputs are then
	// missing from the result).
	Partial bool
}

// Merge combines the outputs of the shards of one job into the output a
// single run would have written: the same results in the same order. It
// refuses outputs of different models or settings, a shard given twice, a
// missing shard (unless Partial) and an input scored by two shards.
func Merge(paths []string, o MergeOptions) (Header, []Result, error) {
	if len(paths) == 0 {
		return Header{}, nil, fmt.Errorf("no shard outputs to merge")
	}
	type block struct {
		key     string
		from    string
		results []Result
	}
	var merged Header
	var blocks []block
	owner := map[string]string{}
	seenShard := map[int]string{}
	for i, p := range paths {
		h, results, err := ReadOutput(p)
		if err != nil {
			return Header{}, nil, err
		}
		if h.Shard == nil {
			return Header{}, nil, fmt.Errorf("%s is not a shard's output (it was scored without --shard)", p)
		}
		if i == 0 {
			merged = h
		} else {
			if h.ModelSHA256 != merged.ModelSHA256 {
				return Header{}, nil, fmt.Errorf("%s was scored by another model (sha256 %.12s...) than %s (%.12s...)", p, h.ModelSHA256, paths[0], merged.ModelSHA256)
			}
			a, b := h.Settings, merged.Settings
			a.Workers, b.Workers = 0, 0
			if a != b {
				return Header{}, nil, fmt.Errorf("%s was scored with other settings (%+v) than %s (%+v)", p, h.Settings, paths[0], merged.Settings)
			}
			if h.Shard.Count != merged.Shard.Count {
				return Header{}, nil, fmt.Errorf("%s is shard %s but %s is shard %s: not the same job", p, h.Shard, paths[0], merged.Shard)
			}
		}
		if prev, dup := seenShard[h.Shard.Index]; dup {
			return Header{}, nil, fmt.Errorf("shard %s given twice: %s and %s", h.Shard, prev, p)
		}
		seenShard[h.Shard.Index] = p
		for j := 0; j < len(results); {
			k := unitKey(results[j])
			end := j + 1
			for end < len(results) && unitKey(results[end]) == k {
				end++
			}
			if prev, dup := owner[k]; dup {
				if prev == p {
					return Header{}, nil, fmt.Errorf("%s: the results of %s are not together (is the file damaged?)", p, k)
				}
				return Header{}, nil, fmt.Errorf("input %s appears in both %s and %s: shards must not overlap", k, prev, p)
			}
			owner[k] = p
			if err := checkUnit(results[j:end]); err != nil {
				return Header{}, nil, fmt.Errorf("%s: %w", p, err)
			}
			blocks = append(blocks, block{key: k, from: p, results: results[j:end]})
			j = end
		}
	}
	n := merged.Shard.Count
	var missing []string
	for i := 0; i < n; i++ {
		if _, ok := seenShard[i]; !ok {
			missing = append(missing, Shard{i, n}.String())
		}
	}
	if len(missing) > 0 && !o.Partial {
		return Header{}, nil, fmt.Errorf("shard(s) %s of %d missing (pass --partial to merge what there is)", strings.Join(missing, ", "), n)
	}
	sort.SliceStable(blocks, func(a, b int) bool { return blocks[a].key < blocks[b].key })
	var out []Result
	for _, b := range blocks {
		out = append(out, b.results...)
	}
	merged.Shard = nil
	merged.Merged = len(paths)
	return merged, out, nil
}

// checkUnit rejects an image listed twice within one unit.
func checkUnit(rs []Result) error {
	seen := map[string]bool{}
	for _, r := range rs {
		k := fmt.Sprintf("%s\x00%s\x00%d", r.Level, r.Path, r.Slice)
		if seen[k] {
			return fmt.Errorf("%s slice %d appears twice", r.Path, r.Slice)
		}
		seen[k] = true
	}
	return nil
}
