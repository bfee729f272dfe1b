package backbone

import (
	"slices"
	"testing"
)

func TestLevelsAndChannels(t *testing.T) {
	for _, c := range []struct {
		size   int
		levels int
		ch     []int64
	}{
		{64, 4, []int64{16, 32, 64, 64}}, // MedIAnomaly's network
		{32, 3, []int64{16, 32, 64}},
		{128, 5, []int64{16, 32, 64, 64, 64}},
		{8, 1, []int64{16}},
	} {
		n, err := Levels(c.size)
		if err != nil || n != c.levels {
			t.Errorf("Levels(%d) = %d, %v; want %d", c.size, n, err, c.levels)
			continue
		}
		if got := Channels(n, 16); !slices.Equal(got, c.ch) {
			t.Errorf("Channels at %d = %v, want %v", c.size, got, c.ch)
		}
	}
	for _, bad := range []int{0, 4, 48, 100, -64} {
		if _, err := Levels(bad); err == nil {
			t.Errorf("Levels(%d) accepted", bad)
		}
	}
}
