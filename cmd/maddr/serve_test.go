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

// A non-loopback address without authentication is refused unless
// --insecure says something else authenticates. (The check comes before the
// model is loaded, so no model is needed here.)
func TestServeRefusesOpenAddressWithoutAuth(t *testing.T) {
	t.Setenv("MADDR_SERVE_BASIC", "")
	t.Setenv("MADDR_SERVE_TOKEN", "")
	missing := t.TempDir() + "/no-model"
	for _, addr := range []string{":8080", "0.0.0.0:8080", "192.0.2.1:8080"} {
		var out, errb bytes.Buffer
		code := runMain([]string{"serve", "--model", missing, "--addr", addr}, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "no authentication is configured") {
			t.Fatalf("%s: exit %d: %s", addr, code, errb.String())
		}
		errb.Reset()
		code = runMain([]string{"serve", "--model", missing, "--addr", addr, "--insecure"}, &out, &errb)
		if code != 1 || strings.Contains(errb.String(), "authentication") {
			t.Fatalf("%s --insecure: exit %d: %s", addr, code, errb.String())
		}
	}
	t.Setenv("MADDR_SERVE_TOKEN", "tok")
	var out, errb bytes.Buffer
	if code := runMain([]string{"serve", "--model", missing, "--addr", ":8080"}, &out, &errb); code != 1 ||
		strings.Contains(errb.String(), "authentication") {
		t.Fatalf("with a token: exit %d: %s", code, errb.String())
	}
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "localhost:80": true, "[::1]:80": true,
		":80": false, "example.org:80": false} {
		if loopbackAddress(addr) != want {
			t.Errorf("loopbackAddress(%q) = %v", addr, !want)
		}
	}
}
