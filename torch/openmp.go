package torch

import (
	"os"
	"syscall"
)

// PassiveOpenMPEnv is the setting ReexecWithPassiveOpenMP adds.
const PassiveOpenMPEnv = "OMP_WAIT_POLICY=passive"

// ReexecWithPassiveOpenMP replaces the running program by itself with
// OMP_WAIT_POLICY=passive added to its environment, unless the variable is
// set already (then it returns nil and changes nothing). On success it does
// not return. It is meant for a command's main, before any other work.
//
// libgomp reads the variable once, in its constructor, before any Go code
// (or an executable's .preinit_array entry: libc restores the environment
// after it) runs, so the process has to start again to change it. Unset, it
// lets each idle OpenMP worker spin for ~300,000 rounds after every parallel
// region; on 2 cores, beside OpenBLAS's own polling pool (see "Threads"),
// the spinning takes the CPU from the thread that has work. Passive workers
// sleep at once. Results are bit-for-bit the same; measured on the bench's
// AE training step (64x64, batch 32, 2 cores): 0.065-0.070 s every time,
// against 0.056-0.21 s from one run to the next with the default; a DPA
// step is unchanged. The price is starting twice: about 0.6 s of loading
// libtorch.
func ReexecWithPassiveOpenMP() error {
	if _, set := os.LookupEnv("OMP_WAIT_POLICY"); set {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, append(os.Environ(), PassiveOpenMPEnv))
}
