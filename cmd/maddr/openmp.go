package main

import (
	"os"
	"syscall"
)

// runtimeEnvironment is what the CLI runs libtorch with when the user has not
// chosen otherwise. Both are read once, when the process starts (libgomp's
// and glibc's initialisers run before any Go code), so the CLI restarts
// itself with them instead of setting them later.
//
//   - OMP_WAIT_POLICY=passive: idle OpenMP threads sleep instead of spinning.
//     An AE step at 32x32 is many short parallel regions, and the spinning
//     threads (with OpenBLAS's own polling worker) took the cores the working
//     threads needed.
//   - MALLOC_TOP_PAD_ (256 MiB) and MALLOC_TRIM_THRESHOLD_ (1 GiB): glibc
//     keeps freed memory at the top of the heap instead of giving it back to
//     the kernel after every op and faulting it in again, zero-filled, on the
//     next. (The same values set with mallopt from Go at start-up did not
//     change the page-fault count; the variables do.)
//
// Measured on 150 AE training steps at 32x32, 2 threads, on a nearly idle
// 2-core machine (`maddr train --model ae --size 32 --iterations 150`):
// 49 s wall, 95 s CPU, 1.25 M page faults, 403 MB peak RSS with glibc's and
// libgomp's defaults; 23 s wall and 44 s CPU with the wait policy alone;
// 10 s, 18 s, 0.09 M and 406 MB with both. The weights are bit-identical
// (waiting and memory placement change no arithmetic).
var runtimeEnvironment = []struct{ name, value string }{
	{"OMP_WAIT_POLICY", "passive"},
	{"MALLOC_TOP_PAD_", "268435456"},
	{"MALLOC_TRIM_THRESHOLD_", "1073741824"},
}

// reexecWithRuntimeEnvironment restarts the process with every variable of
// runtimeEnvironment that is unset. It returns only if nothing was missing or
// exec failed (then the command runs with the libraries' defaults).
func reexecWithRuntimeEnvironment() {
	env := os.Environ()
	added := false
	for _, v := range runtimeEnvironment {
		if _, set := os.LookupEnv(v.name); !set {
			env = append(env, v.name+"="+v.value)
			added = true
		}
	}
	if !added {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, env)
}
