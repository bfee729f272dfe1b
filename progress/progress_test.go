package progress

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is advanced by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLinesModePrintsPeriodically(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	b := New(&out, 100, Options{Label: "train", Unit: "img", Interval: 10 * time.Second, Width: 10, Now: clock.Now})
	// 35 iterations of 1 s and 32 images each: lines at 10, 20 and 30 s.
	for i := 1; i <= 35; i++ {
		clock.Advance(time.Second)
		b.Step(32, Value{"rec", 0.5 / float64(i)}, Value{"focal_o", 0.0456})
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), out.String())
	}
	// At 10 s: 10 of 100 done at 1 it/s -> 90 s left. 320 images / 10 s = 32.0 img/s.
	want := "train 10/100 [>         ]  10.0% 32.0 img/s 00:10<01:30 rec 0.05 focal_o 0.0456"
	if lines[0] != want {
		t.Errorf("first line\n got %q\nwant %q", lines[0], want)
	}
	// At 30 s: 30 done -> 70 s left.
	if !strings.Contains(lines[2], "30/100 [==>       ]  30.0%") || !strings.Contains(lines[2], "00:30<01:10") {
		t.Errorf("third line %q", lines[2])
	}
	if strings.Contains(out.String(), "\r") {
		t.Error("lines mode wrote a carriage return")
	}

	out.Reset()
	clock.Advance(5 * time.Second)
	b.Finish()
	// 35 iterations, 1120 images in 40 s = 28.0 img/s.
	want = "train 35/100 [==>       ]  35.0% 28.0 img/s 00:40 done rec 0.01429 focal_o 0.0456\n"
	if out.String() != want {
		t.Errorf("final line\n got %q\nwant %q", out.String(), want)
	}
	out.Reset()
	b.Step(1)
	b.Finish()
	if out.Len() != 0 {
		t.Errorf("wrote after Finish: %q", out.String())
	}
}

func TestETA(t *testing.T) {
	for _, tc := range []struct {
		name    string
		total   int
		start   int
		steps   int
		perStep time.Duration
		want    string
	}{
		// 250 of 1000 in 250 * 2 s = 500 s -> 750 left * 2 s = 1500 s = 25:00.
		{"quarter", 1000, 0, 250, 2 * time.Second, "08:20<25:00"},
		// Resumed at 9000: 600 new iterations in 60 s -> 0.1 s each, 400 left = 40 s;
		// the rate counts only the new iterations (10 it/s).
		{"resumed", 10000, 9000, 600, 100 * time.Millisecond, "9600/10000"},
		{"resumed eta", 10000, 9000, 600, 100 * time.Millisecond, "10.0 it/s 01:00<00:40"},
		// Beyond an hour: 1 of 3 in 1 h 1 min -> 2 h 2 min left.
		{"hours", 3, 0, 1, 61 * time.Minute, "1:01:00<2:02:00"},
	} {
		clock := newClock()
		var out bytes.Buffer
		b := New(&out, tc.total, Options{Mode: Lines, Interval: time.Hour * 1000, Start: tc.start, Now: clock.Now})
		for i := 0; i < tc.steps; i++ {
			clock.Advance(tc.perStep)
			b.Step(0)
		}
		b.mu.Lock()
		line := b.lineLocked(clock.Now(), false)
		b.mu.Unlock()
		if !strings.Contains(line, tc.want) {
			t.Errorf("%s: line %q lacks %q", tc.name, line, tc.want)
		}
	}
}

func TestUnknownTotal(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	b := New(&out, 0, Options{Label: "score", Unit: "img", Now: clock.Now})
	clock.Advance(2 * time.Second)
	b.Add(4, 500)
	b.Finish()
	if want := "score 4 250 img/s 00:02 done\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestRedrawIsRateLimited(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	b := New(&out, 2000, Options{Mode: Redraw, Now: clock.Now})
	// 2000 steps of 1 ms = 2 s: the first step draws, then one redraw per 100 ms.
	for i := 0; i < 2000; i++ {
		clock.Advance(time.Millisecond)
		b.Step(1)
	}
	if n := strings.Count(out.String(), "\r"); n != 20 {
		t.Errorf("%d redraws for 2 s of steps, want 20", n)
	}
	if strings.Contains(out.String(), "\n") {
		t.Error("redraw mode wrote a newline before Finish")
	}
	b.Finish()
	// The final line is one cell shorter than the last ETA line, so it ends in one blank.
	if !strings.HasSuffix(out.String(), "\r2000/2000 [====================] 100.0% 1000 it/s 00:02 done \n") {
		t.Errorf("final redraw: %q", out.String()[strings.LastIndex(out.String(), "\r"):])
	}
}

func TestRedrawBlanksLongerLine(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	b := New(&out, 10, Options{Mode: Redraw, Width: 4, Now: clock.Now})
	clock.Advance(time.Second)
	b.Step(0, Value{"loss", 123.456789})
	first := out.String()
	clock.Advance(time.Second)
	b.Step(0, Value{"loss", 1})
	second := strings.TrimPrefix(out.String(), first)
	if len(second) != len(first) || !strings.HasSuffix(second, "loss 1    ") {
		t.Errorf("redraw %q after %q does not cover the old line", second, first)
	}
}

func TestPrintfKeepsBar(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	b := New(&out, 10, Options{Mode: Redraw, Width: 4, Now: clock.Now})
	clock.Advance(time.Second)
	b.Step(0)
	out.Reset()
	b.Printf("saved %s\n", "ckpt.bin")
	got := out.String()
	if !strings.HasPrefix(got, "\rsaved ckpt.bin") || !strings.Contains(got, "\n\r1/10 [    ]  10.0%") {
		t.Errorf("Printf output %q", got)
	}
}

func TestAutoModeOnBuffer(t *testing.T) {
	b := New(&bytes.Buffer{}, 10, Options{})
	if b.mode != Lines {
		t.Errorf("a bytes.Buffer got mode %v, want Lines", b.mode)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorIsKept(t *testing.T) {
	b := New(failingWriter{}, 10, Options{})
	b.Step(1)
	b.Finish()
	if err := b.Err(); err == nil || err.Error() != "disk full" {
		t.Errorf("Err() = %v", err)
	}
}

func TestConcurrentSteps(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 4000, Options{Mode: Redraw, Unit: "img"})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				b.Step(2, Value{"loss", float64(i)})
			}
		}()
	}
	wg.Wait()
	b.Finish()
	if b.done != 4000 || b.items != 8000 {
		t.Errorf("counted %d iterations and %d items, want 4000 and 8000", b.done, b.items)
	}
	if !strings.Contains(out.String(), "4000/4000") {
		t.Error("final line missing")
	}
}

func TestClock(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "00:00", 59499 * time.Millisecond: "00:59", 61 * time.Second: "01:01",
		3599 * time.Second: "59:59", 3600 * time.Second: "1:00:00", 100 * time.Hour: "100:00:00", -time.Second: "00:00",
	} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
}

// BenchmarkStep measures what a training loop pays per iteration.
func BenchmarkStep(b *testing.B) {
	bar := New(&bytes.Buffer{}, b.N, Options{Mode: Redraw, Unit: "img"})
	for i := 0; i < b.N; i++ {
		bar.Step(32, Value{"rec", 0.1}, Value{"focal_o", 0.2})
	}
	bar.Finish()
}
