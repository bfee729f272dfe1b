// Package progress reports how far a long loop (training, scoring a data
// set) has come: iteration i/N, a bar, percentage, throughput, elapsed time,
// ETA and a few named current values such as losses, on one line like
//
//	train 1234/16000 [==>               ]   7.7% 512.3 img/s 02:03<24:31 rec 0.1234 focal_o 0.0456
//
// On a terminal the line is redrawn in place; in a log file or CI output,
// where "\r" redraws would pile up, a full line is printed every few seconds
// instead. Finish prints the final line either way. Several bars at once, and
// log lines between them, share a terminal through a Board, which gives each
// bar a line of its own.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Mode selects how the bar is written.
type Mode int

const (
	// Auto redraws in place when the writer is a terminal (an *os.File on a
	// character device, or a Board on one) and prints periodic lines
	// otherwise.
	Auto Mode = iota
	// Redraw rewrites one line in place with "\r", at most once per
	// MinRedraw; on a Board, the bar's own line of the board.
	Redraw
	// Lines prints one full line every Interval, for logs.
	Lines
)

// Defaults of Options.
const (
	DefaultInterval  = 10 * time.Second
	DefaultMinRedraw = 100 * time.Millisecond
	DefaultWidth     = 20
)

// Options tunes a Bar; the zero value is usable.
type Options struct {
	// Label starts the line, e.g. "train" or "score lits".
	Label string
	// Unit names the items counted by Step for the rate ("img" gives
	// "512.3 img/s"); empty reports iterations per second.
	Unit string
	Mode Mode
	// Interval is the time between lines in Lines mode (0 = DefaultInterval).
	Interval time.Duration
	// MinRedraw is the least time between redraws in Redraw mode, so that a
	// fast loop spends its time computing, not writing (0 = DefaultMinRedraw).
	MinRedraw time.Duration
	// Width is the number of cells of the bar (0 = DefaultWidth).
	Width int
	// Start is the number of iterations already done before this run (a
	// resumed training); the count starts there, the rate and ETA use only
	// the iterations done since.
	Start int
	// Now is the clock; nil means time.Now. Tests pass a fake one.
	Now func() time.Time
}

// Value is a named number shown after the timing, e.g. a loss term.
type Value struct {
	Name  string
	Value float64
}

// Bar is a progress line. All methods are safe for concurrent use.
type Bar struct {
	w     io.Writer
	total int
	opts  Options
	now   func() time.Time
	mode  Mode
	// board is w when it is a Board; a Redraw bar then draws on line.
	board *Board

	mu       sync.Mutex
	line     *boardLine // nil until the first draw
	start    time.Time
	done     int // iterations, including opts.Start
	items    int64
	names    []string // value names in first-seen order
	values   map[string]float64
	lastDraw time.Time
	drawn    bool
	lastLen  int // runes of the last redrawn line, to blank its remains
	finished bool
	err      error
}

// New starts a bar for total iterations (0 or less if unknown: no bar,
// percentage or ETA) written to w, usually os.Stderr or a Board on it.
func New(w io.Writer, total int, opts Options) *Bar {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.MinRedraw <= 0 {
		opts.MinRedraw = DefaultMinRedraw
	}
	if opts.Width <= 0 {
		opts.Width = DefaultWidth
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	board, _ := w.(*Board)
	mode := opts.Mode
	if mode == Auto {
		mode = Lines
		if board != nil && board.Terminal() || isTerminal(w) {
			mode = Redraw
		}
	}
	b := &Bar{w: w, total: total, opts: opts, now: now, mode: mode, board: board, done: opts.Start, values: map[string]float64{}}
	b.start = now()
	b.lastDraw = b.start
	return b
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// Step records one finished iteration that processed items items (e.g. the
// batch size; 0 if not counted) and updates the given values.
func (b *Bar) Step(items int, values ...Value) {
	b.Add(1, items, values...)
}

// Add records iterations finished iterations that processed items items in
// total, and updates the given values.
func (b *Bar) Add(iterations, items int, values ...Value) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += iterations
	b.items += int64(items)
	b.setLocked(values)
	b.maybeDrawLocked()
}

// Set updates values without counting progress.
func (b *Bar) Set(values ...Value) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setLocked(values)
}

func (b *Bar) setLocked(values []Value) {
	for _, v := range values {
		if _, seen := b.values[v.Name]; !seen {
			b.names = append(b.names, v.Name)
		}
		b.values[v.Name] = v.Value
	}
}

func (b *Bar) maybeDrawLocked() {
	if b.finished {
		return
	}
	now := b.now()
	switch b.mode {
	case Redraw:
		if b.drawn && now.Sub(b.lastDraw) < b.opts.MinRedraw {
			return
		}
		b.redrawLocked(b.lineLocked(now, false))
	default:
		if now.Sub(b.lastDraw) < b.opts.Interval {
			return
		}
		b.writeLocked(b.lineLocked(now, false) + "\n")
	}
	b.lastDraw = now
	b.drawn = true
}

// redrawLocked overwrites the current terminal line, blanking what is left
// of a longer previous line, or the bar's line of the board.
func (b *Bar) redrawLocked(line string) {
	if b.board != nil {
		var err error
		if b.line == nil {
			b.line, err = b.board.add(line)
		} else {
			err = b.board.update(b.line, line)
		}
		b.keepErrLocked(err)
		return
	}
	n := utf8.RuneCountInString(line)
	pad := ""
	if n < b.lastLen {
		pad = strings.Repeat(" ", b.lastLen-n)
	}
	b.lastLen = n
	b.writeLocked("\r" + line + pad)
}

// writeLocked writes and remembers the first error for Err: a progress line
// that cannot be shown is no reason to stop the work it reports on.
func (b *Bar) writeLocked(s string) {
	_, err := io.WriteString(b.w, s)
	b.keepErrLocked(err)
}

func (b *Bar) keepErrLocked(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// Printf prints a message on its own line (a checkpoint saved, a warning)
// without garbling the bar, which is redrawn below it on a terminal (on a
// Board, the message goes above the board's block of bars).
func (b *Bar) Printf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	if b.mode == Redraw && b.board == nil && b.drawn && !b.finished {
		b.redrawLocked(msg)
		b.writeLocked("\n")
		b.lastLen = 0
		b.redrawLocked(b.lineLocked(b.now(), false))
		return
	}
	b.writeLocked(msg + "\n")
}

// Finish prints the final line (total time and mean rate instead of the ETA)
// and ends the bar; later calls and updates print nothing.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	line := b.lineLocked(b.now(), true)
	switch {
	case b.mode == Redraw && b.line != nil:
		// The final line leaves the block and stays above it.
		b.keepErrLocked(b.board.finish(b.line, line))
	case b.mode == Redraw && b.board == nil:
		b.redrawLocked(line)
		b.writeLocked("\n")
	default:
		b.writeLocked(line + "\n")
	}
	b.finished = true
}

// Err returns the first error met writing the bar, if any.
func (b *Bar) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// lineLocked renders the current state.
func (b *Bar) lineLocked(now time.Time, final bool) string {
	var sb strings.Builder
	if b.opts.Label != "" {
		sb.WriteString(b.opts.Label)
		sb.WriteByte(' ')
	}
	elapsed := now.Sub(b.start)
	if b.total > 0 {
		frac := float64(b.done) / float64(b.total)
		fmt.Fprintf(&sb, "%d/%d %s %5.1f%%", b.done, b.total, bar(frac, b.opts.Width), 100*frac)
	} else {
		fmt.Fprintf(&sb, "%d", b.done)
	}
	sb.WriteByte(' ')
	sb.WriteString(b.rateLocked(elapsed))
	sb.WriteByte(' ')
	sb.WriteString(clock(elapsed))
	switch {
	case final:
		sb.WriteString(" done")
	case b.total > 0:
		sb.WriteByte('<')
		sb.WriteString(b.etaLocked(elapsed))
	}
	for _, name := range b.names {
		fmt.Fprintf(&sb, " %s %.4g", name, b.values[name])
	}
	return sb.String()
}

func (b *Bar) rateLocked(elapsed time.Duration) string {
	unit, count := "it", float64(b.done-b.opts.Start)
	if b.opts.Unit != "" {
		unit, count = b.opts.Unit, float64(b.items)
	}
	if elapsed <= 0 {
		return "? " + unit + "/s"
	}
	rate := count / elapsed.Seconds()
	switch {
	case rate >= 100:
		return fmt.Sprintf("%.0f %s/s", rate, unit)
	case rate >= 10:
		return fmt.Sprintf("%.1f %s/s", rate, unit)
	}
	return fmt.Sprintf("%.2f %s/s", rate, unit)
}

// etaLocked extrapolates the mean time per iteration of this run to the
// iterations left.
func (b *Bar) etaLocked(elapsed time.Duration) string {
	doneHere := b.done - b.opts.Start
	left := b.total - b.done
	if left <= 0 {
		return clock(0)
	}
	if doneHere <= 0 || elapsed <= 0 {
		return "?"
	}
	return clock(time.Duration(float64(elapsed) / float64(doneHere) * float64(left)))
}

// bar draws frac (clamped to [0, 1]) as width cells.
func bar(frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	full := int(frac * float64(width))
	cells := strings.Repeat("=", full)
	if full < width {
		if full > 0 {
			cells = cells[:full-1] + ">"
		}
		cells += strings.Repeat(" ", width-full)
	}
	return "[" + cells + "]"
}

// clock formats a duration as MM:SS, or H:MM:SS from one hour on.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s < 0 {
		s = 0
	}
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}
