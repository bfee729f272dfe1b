package torch

/*
#include "shim.h"
*/
import "C"

// MemoryFormat is the order in which a 4-d tensor's elements are stored.
type MemoryFormat int

// The layouts: ContiguousFormat is NCHW (row-major), ChannelsLast is NHWC,
// which oneDNN's convolutions process without reordering the data first.
const (
	ContiguousFormat MemoryFormat = C.MT_CONTIGUOUS_FORMAT
	ChannelsLast     MemoryFormat = C.MT_CHANNELS_LAST
)

// ContiguousAs returns t stored densely in format f (t itself when it
// already is), like tensor.contiguous(memory_format=f). Autograd records it.
func (t *Tensor) ContiguousAs(f MemoryFormat) *Tensor {
	if bad := precheck("contiguous", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("contiguous", C.mt_contiguous_as(t.h, C.int(f), &h), h, t)
}

// IsContiguousAs reports whether t is stored densely in format f.
func (t *Tensor) IsContiguousAs(f MemoryFormat) bool {
	return t.Err() == nil && C.mt_is_contiguous_as(t.h, C.int(f)) != 0
}

// Relayout stores t's values in format f in place: every later use of this
// handle sees the new layout (same values). It is meant for frozen weights,
// converted once instead of on every call; a tensor that requires gradient
// is refused, and other handles sharing t's storage keep the old layout.
func (t *Tensor) Relayout(f MemoryFormat) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("relayout", C.mt_relayout_(t.h, C.int(f)))
}
