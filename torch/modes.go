package torch

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
)

// InferenceMode runs fn as torch.inference_mode does: no autograd recording
// and, unlike NoGrad, no version-counter or view bookkeeping on the tensors
// fn creates. Those tensors are "inference tensors": autograd refuses to save
// one for a later backward pass, so results that feed a loss with a gradient
// must be computed under NoGrad instead, or copied with Clone outside fn.
// The mode is thread-local, so the goroutine stays on its OS thread.
func InferenceMode(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var m C.mt_inference_mode
	if err := cerror("inference_mode", C.mt_inference_mode_enter(&m)); err != nil {
		return err
	}
	defer C.mt_inference_mode_exit(m)
	return fn()
}

// Autocast runs fn with libtorch's CPU autocast to dtype (Float16 or
// BFloat16), as torch.autocast("cpu", dtype) does: convolutions, matrix
// products and linear layers compute in dtype and return dtype tensors;
// ops that need range (reductions, losses) stay float32. Results read with
// Float32s are converted. The mode is thread-local, so the goroutine stays
// on its OS thread; autocast's cache of converted weights is cleared when
// fn returns, as PyTorch does on leaving the outermost autocast block.
func Autocast(dtype DType, fn func() error) error {
	if dtype != BFloat16 && dtype != Float16 {
		return fmt.Errorf("torch: autocast to %v: only bfloat16 and float16 are supported", dtype)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wasOn := C.mt_autocast_cpu_enabled() != 0
	if err := cerror("autocast", C.mt_set_autocast_cpu(1, C.int(dtype))); err != nil {
		return err
	}
	defer func() {
		if !wasOn {
			C.mt_set_autocast_cpu(0, C.int(dtype))
			C.mt_autocast_clear_cache()
		}
	}()
	return fn()
}

// AutocastEnabled reports whether CPU autocast is on for the calling OS thread.
func AutocastEnabled() bool { return C.mt_autocast_cpu_enabled() != 0 }

// AutocastDType is the element type CPU autocast computes in on the
// calling OS thread (meaningful while AutocastEnabled).
func AutocastDType() DType { return DType(C.mt_autocast_cpu_dtype()) }
