package progress

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// ANSI sequences the board draws with.
const (
	clearLine  = "\x1b[2K" // erase the whole cursor line
	clearBelow = "\x1b[J"  // erase from the cursor to the end of the screen
)

// cursorUp moves the cursor up n lines, keeping the column.
func cursorUp(n int) string { return fmt.Sprintf("\x1b[%dA", n) }

// Board shares one terminal stream between several progress bars and the
// log lines written around them. Every active bar in Redraw mode gets a line
// of its own in a block at the bottom, redrawn in place; everything else
// written to the board (log lines, the final line of a finished bar) is
// printed above the block and stays. Pass a Board to New as the writer and
// use it as the writer of the log too, so that nothing lands in the middle
// of a bar.
//
// After each redraw the cursor rests at the start of the line below the
// block, so a message written past the board (a crash) starts on a line of
// its own. Block lines are cut to the terminal width: a line that wrapped
// would take two rows and break the count of rows to move up.
//
// On a stream that is not a terminal no bar asks for a line in Auto mode and
// writes go through unchanged, one at a time. A Board is safe for concurrent
// use; bars call it with their own lock held, and it never calls a bar.
type Board struct {
	w        io.Writer
	terminal bool
	// columns reports the terminal width, 0 when unknown.
	columns func() int

	mu    sync.Mutex
	lines []*boardLine // active bar lines, top to bottom
	shown int          // rows of the block now on screen
	// pending holds text written while the block is shown, up to the end
	// of its last complete line: a partial line cannot go above the block.
	pending []byte
}

// boardLine is the line of one bar on the board.
type boardLine struct {
	text string
}

// NewBoard returns a board drawing on w, usually os.Stderr; w already a
// Board is returned as is.
func NewBoard(w io.Writer) *Board {
	if b, ok := w.(*Board); ok {
		return b
	}
	b := &Board{w: w, terminal: isTerminal(w), columns: func() int { return 0 }}
	if b.terminal {
		b.columns = func() int { return terminalWidth(w) }
	}
	return b
}

// Terminal reports whether the board draws on a terminal, where bars in
// Auto mode redraw their lines in place.
func (b *Board) Terminal() bool { return b.terminal }

// SetWidth fixes the width block lines are cut to (0: none), instead of the
// terminal's.
func (b *Board) SetWidth(columns int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.columns = func() int { return columns }
}

// Write prints p above the block of bars. With no block on screen it goes
// through as is; otherwise complete lines are printed above the block, which
// is redrawn below them, and a trailing partial line waits for its end.
func (b *Board) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown == 0 && len(b.lines) == 0 {
		return b.w.Write(p)
	}
	b.pending = append(b.pending, p...)
	end := bytes.LastIndexByte(b.pending, '\n') + 1
	if end == 0 {
		return len(p), nil
	}
	above := string(b.pending[:end])
	b.pending = append(b.pending[:0], b.pending[end:]...)
	if err := b.renderLocked(above); err != nil {
		return 0, err
	}
	return len(p), nil
}

// add gives a bar a new line at the bottom of the block, showing text.
func (b *Board) add(text string) (*boardLine, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := &boardLine{text: text}
	b.lines = append(b.lines, l)
	return l, b.renderLocked("")
}

// update shows text on the bar's line.
func (b *Board) update(l *boardLine, text string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	l.text = text
	return b.renderLocked("")
}

// finish removes the bar's line from the block and prints final above it
// for good.
func (b *Board) finish(l *boardLine, final string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.lines {
		if x == l {
			b.lines = append(b.lines[:i], b.lines[i+1:]...)
			break
		}
	}
	err := b.renderLocked(final + "\n")
	if len(b.lines) == 0 && len(b.pending) > 0 && err == nil {
		// The last bar is gone: a partial line has nothing left to wait for.
		_, err = b.w.Write(b.pending)
		b.pending = b.pending[:0]
	}
	return err
}

// renderLocked writes above (complete lines, possibly none) where the block
// starts and the block below it, in one write so that the terminal shows no
// half-drawn state.
func (b *Board) renderLocked(above string) error {
	var sb strings.Builder
	if b.shown > 0 {
		sb.WriteString("\r")
		sb.WriteString(cursorUp(b.shown))
	}
	if above != "" {
		// A long log line wraps onto rows of the old block: clear them all
		// first rather than line by line.
		if b.shown > 0 {
			sb.WriteString(clearBelow)
		}
		sb.WriteString(above)
	}
	width := b.columns()
	for _, l := range b.lines {
		sb.WriteString(clearLine)
		sb.WriteString(cut(l.text, width))
		sb.WriteByte('\n')
	}
	if above == "" && len(b.lines) < b.shown {
		sb.WriteString(clearBelow)
	}
	b.shown = len(b.lines)
	_, err := io.WriteString(b.w, sb.String())
	return err
}

// cut shortens s to fewer than width runes (0: no limit). The last column
// stays blank: a character written there leaves some terminals about to
// wrap, which would move the next line down.
func cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) < width {
		return s
	}
	n := 0
	for i := range s {
		if n == width-1 {
			return s[:i]
		}
		n++
	}
	return s
}
