package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/torch"
)

// rssMiB reads this process's resident set size.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024
		}
	}
	return 0
}

// TestServerUnderLoad sends 200 requests, 32 at a time, to a real listener
// on loopback: valid images of every group, oversized uploads, corrupt files,
// wrong content types and path-traversal attempts. Valid uploads must all
// succeed (the queue is sized for the client's concurrency), bad ones must
// get a 4xx that says why, nothing may answer 5xx, and memory must come back.
func TestServerUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped under -short")
	}
	sc, mod := scorer(t)
	const (
		total       = 200
		concurrency = 32
		maxBody     = 256 << 10
	)
	s := New(sc, Info{}, Config{Workers: 2, QueueSize: 64, MaxBodyBytes: maxBody, Timeout: 90 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s) }()
	defer func() {
		cancel()
		<-served
	}()
	base := "http://" + ln.Addr().String()

	valid := map[string][]byte{}
	for _, g := range []string{"liver-ct", "lung-ct", "chest-xray"} {
		valid[g+"/normal"] = samplePNG(t, mod, g, dataset.Normal)
		valid[g+"/abnormal"] = samplePNG(t, mod, g, dataset.Abnormal)
	}
	validKeys := make([]string, 0, len(valid))
	for k := range valid {
		validKeys = append(validKeys, k)
	}
	sort.Strings(validKeys)
	corrupt := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0x5a}, 300)...)
	oversized := bytes.Repeat([]byte{1}, maxBody+1024)
	traversal := []string{"/../../../../etc/passwd", "/web/../../go.mod", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/web/index.html/../../server.go"}

	type outcome struct {
		kind    string
		status  int
		body    string
		latency time.Duration
		err     error
	}
	// Warm up once so the first forward passes do not count as load latency.
	if code, _ := post(t, base+"/api/score", "image/png", valid[validKeys[0]]); code != http.StatusOK {
		t.Fatalf("warm-up request: %d", code)
	}
	runtime.GC()
	rss0, live0 := rssMiB(), torch.LiveTensors()

	client := &http.Client{Timeout: 100 * time.Second}
	results := make([]outcome, total)
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	deadline := time.Now().Add(150 * time.Second)
	for i := 0; i < total; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if time.Now().After(deadline) {
				results[i] = outcome{kind: "skipped", err: fmt.Errorf("load test ran out of time")}
				return
			}
			var req *http.Request
			kind := ""
			switch i % 10 {
			case 0, 1, 2, 3, 4:
				kind = "valid"
				req, _ = http.NewRequest("POST", base+"/api/score", bytes.NewReader(valid[validKeys[i%len(validKeys)]]))
				req.Header.Set("Content-Type", "image/png")
			case 5, 6:
				kind = "oversized"
				req, _ = http.NewRequest("POST", base+"/api/score", bytes.NewReader(oversized))
				req.Header.Set("Content-Type", "application/octet-stream")
			case 7:
				kind = "corrupt"
				req, _ = http.NewRequest("POST", base+"/api/score", bytes.NewReader(corrupt))
				req.Header.Set("Content-Type", "image/png")
			case 8:
				kind = "wrong-type"
				req, _ = http.NewRequest("POST", base+"/api/score", strings.NewReader("name=value"))
				req.Header.Set("Content-Type", "text/plain")
			case 9:
				kind = "traversal"
				req, _ = http.NewRequest("GET", base+traversal[i%len(traversal)], nil)
			}
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				results[i] = outcome{kind: kind, err: err}
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			results[i] = outcome{kind: kind, status: resp.StatusCode, body: string(body), latency: time.Since(start)}
		}(i)
	}
	wg.Wait()

	var latencies []time.Duration
	counts := map[string]map[int]int{}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("request %d (%s): %v", i, r.kind, r.err)
			continue
		}
		if counts[r.kind] == nil {
			counts[r.kind] = map[int]int{}
		}
		counts[r.kind][r.status]++
		if r.status >= 500 {
			t.Errorf("request %d (%s): server error %d: %s", i, r.kind, r.status, r.body)
			continue
		}
		switch r.kind {
		case "valid":
			latencies = append(latencies, r.latency)
			if r.status != http.StatusOK || !strings.Contains(r.body, `"raw_score"`) {
				t.Errorf("valid upload %d: %d %.200s", i, r.status, r.body)
			}
		case "oversized":
			// The server may stop reading an oversized body early; the answer must still be 413.
			if r.status != http.StatusRequestEntityTooLarge {
				t.Errorf("oversized upload %d: %d %.200s", i, r.status, r.body)
			}
		case "corrupt":
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "undecodable") {
				t.Errorf("corrupt upload %d: %d %.200s", i, r.status, r.body)
			}
		case "wrong-type":
			if r.status != http.StatusUnsupportedMediaType {
				t.Errorf("wrong content type %d: %d %.200s", i, r.status, r.body)
			}
		case "traversal":
			if r.status == http.StatusOK || strings.Contains(r.body, "root:") || strings.Contains(r.body, "module github.com") || strings.Contains(r.body, "package server") {
				t.Errorf("path traversal %d served something: %d %.200s", i, r.status, r.body)
			}
		}
	}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	if len(latencies) > 0 {
		p := func(q float64) time.Duration { return latencies[int(q*float64(len(latencies)-1))] }
		t.Logf("valid uploads: %d, latency p50 %v, p99 %v, max %v (2 workers, %d clients at a time)",
			len(latencies), p(0.50).Round(time.Millisecond), p(0.99).Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), concurrency)
	}
	t.Logf("status counts by kind: %v", counts)

	runtime.GC()
	rss1, live1 := rssMiB(), torch.LiveTensors()
	t.Logf("RSS before %.0f MiB, after %.0f MiB; live tensors %d -> %d", rss0, rss1, live0, live1)
	if live1 > live0 {
		t.Errorf("%d tensors leaked under load", live1-live0)
	}
	if rss1 > rss0+512 {
		t.Errorf("RSS grew from %.0f to %.0f MiB under load", rss0, rss1)
	}
}
