//go:build !linux

package progress

import "io"

// terminalWidth is unknown off Linux: block lines are not cut.
func terminalWidth(io.Writer) int { return 0 }
