package shard

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseCountsFromOne(t *testing.T) {
	for in, want := range map[string]Shard{"": {}, "1/1": {1, 1}, " 2/8 ": {2, 8}, "8/8": {8, 8}} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0/8", "9/8", "-1/8", "1/0", "3", "a/b"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): want an error", bad)
		}
	}
}

func TestEveryItemHasExactlyOneShard(t *testing.T) {
	for k := 0; k < 100; k++ {
		byPos, byKey := 0, 0
		for i := 1; i <= 3; i++ {
			s := Shard{Index: i, Count: 3}
			if s.OwnsPosition(k) {
				byPos++
			}
			if s.OwnsKey(fmt.Sprint("item", k)) {
				byKey++
			}
		}
		if byPos != 1 || byKey != 1 {
			t.Fatalf("item %d owned by %d shards by position and %d by key", k, byPos, byKey)
		}
	}
	if !(Shard{}).OwnsKey("x") || !(Shard{}).OwnsPosition(7) {
		t.Error("the whole job must own everything")
	}
}

func TestMissingAndUnion(t *testing.T) {
	if m := Missing(map[int]bool{1: true, 3: true}, 4); len(m) != 2 || m[0].String() != "2/4" || m[1].String() != "4/4" {
		t.Errorf("Missing = %v", m)
	}
	id := func(s string) string { return s[:1] }
	var dropped []string
	got, err := Union([][]string{{"a1", "b1"}, {"b2", "c2"}}, id, func(first, later string) error {
		dropped = append(dropped, later)
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[a1 b1 c2]" || fmt.Sprint(dropped) != "[b2]" {
		t.Errorf("Union = %v, %v (dropped %v)", got, err, dropped)
	}
	refuse := errors.New("overlap")
	if _, err := Union([][]string{{"a1"}, {"a2"}}, id, func(string, string) error { return refuse }); !errors.Is(err, refuse) {
		t.Errorf("Union kept an item it was told to refuse: %v", err)
	}
}
