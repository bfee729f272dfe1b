package scoretest

import (
	"os"
	"sync"
	"testing"
)

// shared is the one model a test binary trains for all its tests that only
// read a model: training dominates their time on a busy machine.
var shared struct {
	once  sync.Once
	dir   string
	model Model
}

// Shared trains the test binary's shared model on first use and returns it.
// The binary's TestMain calls RemoveShared after m.Run.
func Shared(t testing.TB) Model {
	t.Helper()
	shared.once.Do(func() {
		var err error
		if shared.dir, err = os.MkdirTemp("", "maddr-shared-model-"); err != nil {
			t.Fatal(err)
		}
		shared.model = Train(t, shared.dir, false, "")
	})
	if shared.model.Path == "" {
		t.Fatal("training the shared test model failed in an earlier test")
	}
	return shared.model
}

// RemoveShared deletes the shared model's folder, if one was made.
func RemoveShared() {
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}
