package main

import (
	"os"
	"sync"
	"testing"

	"github.com/maddr-project/maddr/score/scoretest"
)

// The command tests that only read a model share one (training it dominates
// their time on a busy machine).
var (
	modelOnce sync.Once
	modelDir  string
	model     scoretest.Model
)

func TestMain(m *testing.M) {
	code := m.Run()
	if modelDir != "" {
		os.RemoveAll(modelDir)
	}
	os.Exit(code)
}

// sharedModel trains the shared model on first use.
func sharedModel(t *testing.T) scoretest.Model {
	t.Helper()
	modelOnce.Do(func() {
		var err error
		if modelDir, err = os.MkdirTemp("", "maddr-cmd-test-"); err != nil {
			t.Fatal(err)
		}
		model = scoretest.Train(t, modelDir, false, "")
	})
	if model.Path == "" {
		t.Fatal("training the shared test model failed in an earlier test")
	}
	return model
}
