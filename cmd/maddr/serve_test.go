package main

import (
	"bytes"
	"strings"
	"testing"
)

// The service listens on loopback unless told otherwise: exposing a medical
// scorer to the network must be a deliberate choice.
func TestServeBindsLoopbackByDefault(t *testing.T) {
	var out, errb bytes.Buffer
	runMain([]string{"serve", "-h"}, &out, &errb)
	if !strings.Contains(errb.String(), `"127.0.0.1:8080"`) {
		t.Fatalf("serve's default address is not 127.0.0.1:8080:\n%s", errb.String())
	}
}
