package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestBenchScaleSizes(t *testing.T) {
	got, err := scaleSizes("64, 128,256:8", 32)
	if err != nil || fmt.Sprint(got) != "[{64 32} {128 32} {256 8}]" {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"64:x", "0", "64:8:2"} {
		if _, err := scaleSizes(bad, 32); err == nil || !strings.Contains(err.Error(), "--scale-sizes") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

// TestBenchRefusesBadFlagsBeforeMeasuring checks the errors that must come
// before any child process is started.
func TestBenchRefusesBadFlagsBeforeMeasuring(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, "usage"},
		{[]string{"--pytorch", "maybe"}, `--pytorch "maybe": want auto, on or off`},
		{[]string{"--scaling", "--scale-batches", "8,x"}, "--scale-batches"},
		{[]string{"--scaling", "--scale-sizes", "64:0"}, "--scale-sizes"},
		{[]string{"--pytorch", "off", "--deconv", "sideways"}, `--deconv "sideways" is not gradient or direct`},
	} {
		err := runBench(c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}
