package score

import (
	"fmt"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/shard"
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
	var merged Header
	var outputs [][]block
	seenShard := map[int]string{}
	for i, p := range paths {
		h, results, err := ReadOutput(p)
		if err != nil {
			return Header{}, nil, err
		}
		if i == 0 {
			merged = h
		}
		if err := checkShard(p, h, paths[0], merged, seenShard); err != nil {
			return Header{}, nil, err
		}
		blocks, err := blocksOf(p, results)
		if err != nil {
			return Header{}, nil, err
		}
		outputs = append(outputs, blocks)
	}
	blocks, err := shard.Union(outputs, func(b block) string { return b.key }, func(first, later block) error {
		if first.from == later.from {
			return fmt.Errorf("%s: the results of %s are not together (is the file damaged?)", later.from, later.key)
		}
		return fmt.Errorf("input %s appears in both %s and %s: shards must not overlap", later.key, first.from, later.from)
	})
	if err != nil {
		return Header{}, nil, err
	}
	if missing := shard.Missing(seenIndices(seenShard), merged.Shard.Count); len(missing) > 0 && !o.Partial {
		names := make([]string, len(missing))
		for i, m := range missing {
			names[i] = m.String()
		}
		return Header{}, nil, fmt.Errorf("shard(s) %s of %d missing (pass --partial to merge what there is)", strings.Join(names, ", "), merged.Shard.Count)
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

// block is the results of one unit (file or volume) in one shard output.
type block struct {
	key     string
	from    string
	results []Result
}

// checkShard refuses output p (header h) unless it is a shard of the same
// job as first (header merged) and not one already seen.
func checkShard(p string, h Header, first string, merged Header, seen map[int]string) error {
	if h.Shard == nil {
		return fmt.Errorf("%s is not a shard's output (it was scored without --shard)", p)
	}
	if h.ModelSHA256 != merged.ModelSHA256 {
		return fmt.Errorf("%s was scored by another model (sha256 %.12s...) than %s (%.12s...)", p, h.ModelSHA256, first, merged.ModelSHA256)
	}
	a, b := h.Settings, merged.Settings
	if pa, pb := modelfile.RecordedPrecision(a.Precision), modelfile.RecordedPrecision(b.Precision); pa != pb {
		// --precision auto depends on the CPU, so shards scored on
		// different machines can differ here.
		return fmt.Errorf("%s was scored in %s but %s in %s: bf16 rounds scores, so one job's shards share a precision; "+
			"score them all with the same --precision (fp32 gives the same scores on every CPU)", p, pa, first, pb)
	}
	a.Workers, b.Workers, a.Precision, b.Precision = 0, 0, "", ""
	if a != b {
		return fmt.Errorf("%s was scored with other settings (%+v) than %s (%+v)", p, h.Settings, first, merged.Settings)
	}
	if h.Shard.Count != merged.Shard.Count {
		return fmt.Errorf("%s is shard %s but %s is shard %s: not the same job", p, h.Shard, first, merged.Shard)
	}
	if prev, dup := seen[h.Shard.Index]; dup {
		return fmt.Errorf("shard %s given twice: %s and %s", h.Shard, prev, p)
	}
	seen[h.Shard.Index] = p
	return nil
}

// blocksOf cuts the results of output p into units, each checked.
func blocksOf(p string, results []Result) ([]block, error) {
	var blocks []block
	for j := 0; j < len(results); {
		k := unitKey(results[j])
		end := j + 1
		for end < len(results) && unitKey(results[end]) == k {
			end++
		}
		if err := checkUnit(results[j:end]); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		blocks = append(blocks, block{key: k, from: p, results: results[j:end]})
		j = end
	}
	return blocks, nil
}

func seenIndices(seen map[int]string) map[int]bool {
	out := map[int]bool{}
	for i := range seen {
		out[i] = true
	}
	return out
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
