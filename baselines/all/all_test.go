package all

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
)

// misspellings gives, for every registered baseline, a misspelt option next
// to the real option it misspells.
var misspellings = map[string]struct{ misspelt, real string }{
	"ae":       {"latnet", "latent"},
	"dpa":      {"vgg_wieghts", "vgg_weights"},
	"fanogan":  {"n_critics", "n_critic"},
	"ganomaly": {"w_advv", "w_adv"},
	"memae":    {"mem_szie", "mem_size"},
}

// TestUnknownOptionIsAnErrorForEveryBaseline checks that a misspelt key in
// --model-options stops every baseline with an error that names the key and
// lists the valid ones, instead of training with the default.
func TestUnknownOptionIsAnErrorForEveryBaseline(t *testing.T) {
	for _, name := range baselines.Names() {
		t.Run(name, func(t *testing.T) {
			m, ok := misspellings[name]
			if !ok {
				t.Fatalf("baseline %s has no entry in misspellings; add one", name)
			}
			raw := json.RawMessage(`{"` + m.misspelt + `": 1}`)
			b, err := baselines.New(name, baselines.Options{ImageSize: 16, Raw: raw})
			if err == nil {
				b.Store().Free()
				t.Fatalf("options %s accepted", raw)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"`+m.misspelt+`"`) || !strings.Contains(msg, "valid:") || !strings.Contains(msg, m.real) {
				t.Fatalf("error %q should name %q and list the valid options, %s among them", msg, m.misspelt, m.real)
			}
		})
	}
}
