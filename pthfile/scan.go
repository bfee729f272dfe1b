package pthfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pickles reads the pickles stored one after another in r (size bytes),
// starting at off. Each pickle is scanned before it is unpickled, because
// gopickle allocates every length a pickle declares before reading it: a
// damaged or hostile file declaring a gigabyte string must be an error, not
// a gigabyte.
type pickles struct {
	r    io.ReaderAt
	off  int64
	size int64
}

// next unpickles the pickle at p.off and moves p.off past it.
func (p *pickles) next(persistent func(any) (any, error)) (any, error) {
	end, err := pickleEnd(p.r, p.off, p.size)
	if err != nil {
		return nil, err
	}
	obj, err := unpickle(bufio.NewReader(io.NewSectionReader(p.r, p.off, end-p.off)), persistent)
	p.off = end
	return obj, err
}

// Pickle opcodes by the argument that follows them (protocols 0 to 5).
const (
	opsNoArg   = "()012NQRabdelostu}]\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98"
	opsFixed1  = "Kqh\x80\x82"
	opsFixed2  = "M\x83"
	opsFixed4  = "Jrj\x84"
	opsFixed8  = "G"
	opsLen1    = "U\x8cC\x8a"
	opsLen4    = "TXB\x8b"
	opsLen8    = "\x8d\x8e\x96"
	opsLine    = "ILSVFpgP"
	opsTwoLine = "ci"
	opFrame    = 0x95
	opStop     = '.'
)

// pickleEnd walks the opcodes of the pickle that starts at byte start and
// returns the offset just past its STOP, checking that every length it
// declares (strings, bytes, long integers, frames) fits in the bytes left.
func pickleEnd(r io.ReaderAt, start, size int64) (int64, error) {
	if start >= size {
		return 0, fmt.Errorf("malformed pickle: the file ends at byte %d where a pickle should start", size)
	}
	br := bufio.NewReader(io.NewSectionReader(r, start, size-start))
	pos := start
	fail := func(format string, a ...any) (int64, error) {
		return 0, fmt.Errorf("malformed pickle at byte %d: %s", pos, fmt.Sprintf(format, a...))
	}
	skip := func(n int64) error {
		if n < 0 || n > size-pos {
			return fmt.Errorf("declares %d bytes, only %d remain", n, size-pos)
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		pos += n
		return nil
	}
	length := func(width int) (int64, error) {
		var b [8]byte
		if _, err := io.ReadFull(br, b[:width]); err != nil {
			return 0, err
		}
		pos += int64(width)
		return int64(binary.LittleEndian.Uint64(b[:])), nil
	}
	line := func() error {
		for {
			c, err := br.ReadByte()
			if err != nil {
				return err
			}
			pos++
			if c == '\n' {
				return nil
			}
		}
	}
	for {
		op, err := br.ReadByte()
		if err != nil {
			return fail("no STOP before the end of the data")
		}
		pos++
		switch {
		case op == opStop:
			return pos, nil
		case op == opFrame:
			// A frame's length is allocated whole before its opcodes are read.
			n, err := length(8)
			if err == nil && (n < 0 || n > size-pos) {
				err = fmt.Errorf("frame of %d bytes, only %d remain", n, size-pos)
			}
			if err != nil {
				return fail("%v", err)
			}
		case in(op, opsNoArg):
		case in(op, opsFixed1):
			err = skip(1)
		case in(op, opsFixed2):
			err = skip(2)
		case in(op, opsFixed4):
			err = skip(4)
		case in(op, opsFixed8):
			err = skip(8)
		case in(op, opsLen1), in(op, opsLen4), in(op, opsLen8):
			width := 1
			if in(op, opsLen4) {
				width = 4
			} else if in(op, opsLen8) {
				width = 8
			}
			var n int64
			if n, err = length(width); err == nil {
				err = skip(n)
			}
		case in(op, opsLine):
			err = line()
		case in(op, opsTwoLine):
			if err = line(); err == nil {
				err = line()
			}
		default:
			return fail("unknown opcode 0x%02x", op)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fail("truncated")
			}
			return fail("%v", err)
		}
	}
}

func in(op byte, set string) bool {
	for i := 0; i < len(set); i++ {
		if set[i] == op {
			return true
		}
	}
	return false
}
