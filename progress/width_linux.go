package progress

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// terminalWidth asks the terminal behind w for its number of columns with
// the TIOCGWINSZ ioctl; 0 when w is no terminal or does not say.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	conn, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	// The layout of struct winsize: rows, columns, then pixel sizes.
	var size struct{ rows, cols, xpixel, ypixel uint16 }
	var errno syscall.Errno
	if err := conn.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&size)))
	}); err != nil || errno != 0 {
		return 0
	}
	return int(size.cols)
}
