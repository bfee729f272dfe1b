package progress

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBoardDrawsEachBarOnItsOwnLine(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	board := NewBoard(&out)
	a := New(board, 10, Options{Label: "a", Mode: Redraw, Width: 4, Now: clock.Now})
	b := New(board, 10, Options{Label: "b", Mode: Redraw, Width: 4, Now: clock.Now})
	const (
		a1 = "a 1/10 [    ]  10.0% 1.00 it/s 00:01<00:09"
		b1 = "b 1/10 [    ]  10.0% 1.00 it/s 00:01<00:09"
		a2 = "a 2/10 [    ]  20.0% 1.00 it/s 00:02<00:08"
		aF = "a 2/10 [    ]  20.0% 0.67 it/s 00:03 done"
		bF = "b 1/10 [    ]  10.0% 0.25 it/s 00:04 done"
	)
	var want strings.Builder
	step := func(what string, do func(), wantBytes string) {
		t.Helper()
		before := out.Len()
		do()
		if got := out.String()[before:]; got != wantBytes {
			t.Errorf("%s wrote\n %q\nwant\n %q", what, got, wantBytes)
		}
		want.WriteString(wantBytes)
	}

	clock.Advance(time.Second)
	// The first bar's first draw starts the block; the second one's adds a line below.
	step("a's first draw", func() { a.Step(0) }, "\x1b[2K"+a1+"\n")
	step("b's first draw", func() { b.Step(0) }, "\r\x1b[1A\x1b[2K"+a1+"\n\x1b[2K"+b1+"\n")
	clock.Advance(time.Second)
	// A redraw moves up over both lines and rewrites them.
	step("a's redraw", func() { a.Step(0) }, "\r\x1b[2A\x1b[2K"+a2+"\n\x1b[2K"+b1+"\n")
	// A log line takes the block's place and the block is drawn below it;
	// a partial line waits for its end.
	step("a partial log line", func() { fmt.Fprint(board, "cell x ") }, "")
	step("the log line's end", func() { fmt.Fprint(board, "finished\n") },
		"\r\x1b[2A\x1b[Jcell x finished\n\x1b[2K"+a2+"\n\x1b[2K"+b1+"\n")
	step("Printf", func() { a.Printf("saved %s", "ckpt") }, "\r\x1b[2A\x1b[Jsaved ckpt\n\x1b[2K"+a2+"\n\x1b[2K"+b1+"\n")
	clock.Advance(time.Second)
	// The finished bar's final line stays above; the block shrinks to one line.
	step("a's Finish", func() { a.Finish() }, "\r\x1b[2A\x1b[J"+aF+"\n\x1b[2K"+b1+"\n")
	step("a's step after Finish", func() { a.Step(0) }, "")
	clock.Advance(time.Second)
	step("b's Finish", func() { b.Finish() }, "\r\x1b[1A\x1b[J"+bF+"\n")
	// With no bar left, writes go through as they are.
	step("a log line with no bar", func() { fmt.Fprint(board, "all done\n") }, "all done\n")
	if err := a.Err(); err != nil {
		t.Error(err)
	}

	screen := emulate(t, want.String())
	wantScreen := []string{"cell x finished", "saved ckpt", aF, bF, "all done"}
	if !equalLines(screen, wantScreen) {
		t.Errorf("screen\n%s\nwant\n%s", strings.Join(screen, "\n"), strings.Join(wantScreen, "\n"))
	}
}

func TestBoardShrinkClearsLeftovers(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	board := NewBoard(&out)
	bars := make([]*Bar, 3)
	for k := range bars {
		bars[k] = New(board, 10, Options{Label: strconv.Itoa(k), Mode: Redraw, Width: 4, Now: clock.Now})
		clock.Advance(time.Second)
		bars[k].Step(0)
	}
	// A line taken away by hand (as no bar does) leaves a row to clear.
	board.mu.Lock()
	board.lines = board.lines[:1]
	board.mu.Unlock()
	out.Reset()
	clock.Advance(time.Second)
	bars[0].Step(0)
	want := "\r\x1b[3A\x1b[2K0 2/10 [    ]  20.0% 0.50 it/s 00:04<00:16\n\x1b[J"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestLinesModeThroughBoardIsUnchanged(t *testing.T) {
	run := func(w func(*bytes.Buffer) io.Writer) string {
		clock := newClock()
		var out bytes.Buffer
		b := New(w(&out), 100, Options{Label: "train", Unit: "img", Interval: 10 * time.Second, Width: 10, Now: clock.Now})
		for i := 1; i <= 35; i++ {
			clock.Advance(time.Second)
			b.Step(32, Value{"rec", 0.5 / float64(i)})
			if i == 12 {
				b.Printf("saved %d\n", i)
			}
		}
		b.Finish()
		return out.String()
	}
	plain := run(func(out *bytes.Buffer) io.Writer { return out })
	boarded := run(func(out *bytes.Buffer) io.Writer { return NewBoard(out) })
	if boarded != plain {
		t.Errorf("through a board\n%q\nwithout\n%q", boarded, plain)
	}
	if strings.Count(plain, "\n") != 5 {
		t.Errorf("want 3 periodic lines, a message and the final line:\n%s", plain)
	}
}

func TestAutoModeOnBoard(t *testing.T) {
	board := NewBoard(&bytes.Buffer{})
	if b := New(board, 10, Options{}); b.mode != Lines {
		t.Errorf("a board on a bytes.Buffer got mode %v, want Lines", b.mode)
	}
	board.terminal = true
	if b := New(board, 10, Options{}); b.mode != Redraw {
		t.Errorf("a board on a terminal got mode %v, want Redraw", b.mode)
	}
	if NewBoard(board) != board {
		t.Error("a board was wrapped in another")
	}
}

func TestBoardCutsLongLines(t *testing.T) {
	clock := newClock()
	var out bytes.Buffer
	board := NewBoard(&out)
	board.SetWidth(12)
	b := New(board, 10, Options{Label: "long", Mode: Redraw, Width: 4, Now: clock.Now})
	clock.Advance(time.Second)
	b.Step(0)
	// 11 columns: the last one stays blank.
	if want := "\x1b[2Klong 1/10 [\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	// Lines above the block stay whole.
	out.Reset()
	fmt.Fprint(board, "a log line longer than twelve\n")
	if !strings.Contains(out.String(), "\x1b[Ja log line longer than twelve\n") {
		t.Errorf("log line cut: %q", out.String())
	}
	out.Reset()
	b.Finish()
	if !strings.Contains(out.String(), "long 1/10 [    ]  10.0% 1.00 it/s 00:01 done\n") {
		t.Errorf("final line cut: %q", out.String())
	}
	for width, want := range map[int]string{0: "héllo", 1: "", 3: "hé", 5: "héll", 6: "héllo", 99: "héllo"} {
		if got := cut("héllo", width); got != want {
			t.Errorf("cut(héllo, %d) = %q, want %q", width, got, want)
		}
	}
}

func TestBoardConcurrentBars(t *testing.T) {
	var out bytes.Buffer
	board := NewBoard(&out)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := New(board, 500, Options{Label: fmt.Sprintf("bar%d", g), Mode: Redraw, MinRedraw: time.Nanosecond})
			for i := range 500 {
				b.Step(1)
				if i%100 == 0 {
					fmt.Fprintf(board, "bar%d at %d\n", g, i)
				}
			}
			b.Finish()
		}()
	}
	wg.Wait()
	screen := emulate(t, out.String())
	if len(screen) != 4*5+4 {
		t.Fatalf("%d lines on the screen, want 24:\n%s", len(screen), strings.Join(screen, "\n"))
	}
	finals := 0
	for _, l := range screen {
		if strings.Contains(l, "500/500") && strings.Contains(l, "done") {
			finals++
		}
	}
	if finals != 4 {
		t.Errorf("%d final lines, want 4:\n%s", finals, strings.Join(screen, "\n"))
	}
}

// emulate plays s on a screen of unlimited height and width that knows the
// sequences the board writes, and returns the screen's lines up to the last
// one with text.
func emulate(t *testing.T, s string) []string {
	t.Helper()
	var rows [][]rune
	row, col := 0, 0
	grow := func() {
		for len(rows) <= row {
			rows = append(rows, nil)
		}
	}
	for i := 0; i < len(s); {
		switch {
		case s[i] == '\r':
			col = 0
			i++
		case s[i] == '\n':
			// As a terminal with the usual output translation to "\r\n".
			row, col = row+1, 0
			i++
		case s[i] == '\x1b':
			end := strings.IndexAny(s[i:], "ABCDEFGHJKm")
			if end < 0 || s[i+1] != '[' {
				t.Fatalf("unknown sequence at %q", s[i:])
			}
			arg, op := s[i+2:i+end], s[i+end]
			i += end + 1
			grow()
			switch {
			case op == 'A':
				n, err := strconv.Atoi(arg)
				if err != nil {
					t.Fatalf("cursor up %q", arg)
				}
				row = max(row-n, 0)
			case op == 'K' && arg == "2":
				rows[row] = nil
			case op == 'J' && arg == "":
				rows[row] = rows[row][:min(col, len(rows[row]))]
				rows = rows[:row+1]
			default:
				t.Fatalf("unexpected sequence %q", "ESC["+arg+string(op))
			}
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			grow()
			for len(rows[row]) <= col {
				rows[row] = append(rows[row], ' ')
			}
			rows[row][col] = r
			col++
			i += size
		}
	}
	var lines []string
	for _, r := range rows {
		lines = append(lines, strings.TrimRight(string(r), " "))
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func equalLines(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func TestEmulateShowsBlockInPlace(t *testing.T) {
	// The block of two lines redrawn twice stays two lines under the log.
	s := "\x1b[2Kx1\n\x1b[2Ky1\n" + "\r\x1b[2A\x1b[2Kx2\n\x1b[2Ky2\n" + "\r\x1b[2A\x1b[Jlog\n\x1b[2Kx3\n\x1b[2Ky3\n"
	if got := emulate(t, s); !equalLines(got, []string{"log", "x3", "y3"}) {
		t.Errorf("screen %q", got)
	}
}
