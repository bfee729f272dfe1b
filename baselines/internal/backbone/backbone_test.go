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

type keysInner struct {
	Width int `json:"width"`
}

type keysConfig struct {
	keysInner
	Latent   int    `json:"latent,omitempty"`
	Loss     string `json:"loss"`
	Internal int    `json:"-"`
	Plain    int
	Count    int `json:"count" settings:"recorded"`
}

func TestDecodeRawNamesUnknownKeysAndTheValidOnes(t *testing.T) {
	if got := Keys(&keysConfig{}); !slices.Equal(got, []string{"Plain", "latent", "loss", "width"}) {
		t.Fatalf("Keys = %v", got)
	}
	var c keysConfig
	// Keys match regardless of case, as encoding/json matches them.
	// A recorded value is accepted (a stored config rebuilds its model) but
	// is not listed as a setting.
	if err := DecodeRaw("m", []byte(`{"width": 3, "LOSS": "l1", "plain": 2, "count": 9}`), &c); err != nil || c.Width != 3 || c.Loss != "l1" || c.Plain != 2 || c.Count != 9 {
		t.Fatalf("decoded %+v, %v", c, err)
	}
	err := DecodeRaw("m", []byte(`{"widht": 3, "Internal": 1, "loss": "l2"}`), &c)
	want := `m settings: unknown options "Internal", "widht" (valid: Plain, latent, loss, width)`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	if err := DecodeRaw("m", []byte(`[1]`), &c); err == nil {
		t.Fatal("a JSON array was accepted as settings")
	}
	if err := DecodeRaw("m", []byte(" null "), &c); err != nil {
		t.Fatal(err)
	}
}
