package main

import (
	"os"
	"testing"

	"github.com/maddr-project/maddr/score/scoretest"
)

// The command tests that only read a model share one (scoretest.Shared).
func TestMain(m *testing.M) {
	code := m.Run()
	scoretest.RemoveShared()
	os.Exit(code)
}

func sharedModel(t *testing.T) scoretest.Model { return scoretest.Shared(t) }
