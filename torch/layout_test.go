package torch

import "testing"

func TestChannelsLastKeepsValues(t *testing.T) {
	vals := make([]float32, 2*3*4*5)
	for i := range vals {
		vals[i] = float32(i)
	}
	err := Run(func(s *Scope) error {
		x := s.Adopt(FromFloat32(vals, 2, 3, 4, 5))
		cl := x.ContiguousAs(ChannelsLast)
		if !cl.IsContiguousAs(ChannelsLast) || cl.IsContiguousAs(ContiguousFormat) {
			t.Error("ContiguousAs did not produce channels-last strides")
		}
		got, err := cl.Float32s()
		if err != nil {
			return err
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Fatalf("element %d: %v, want %v", i, got[i], vals[i])
			}
		}
		w := FromFloat32(vals, 2, 3, 4, 5)
		defer w.Free()
		if err := w.Relayout(ChannelsLast); err != nil {
			return err
		}
		if !w.IsContiguousAs(ChannelsLast) {
			t.Error("Relayout left the strides unchanged")
		}
		// Values copied into a relaid-out tensor keep its layout.
		if err := w.CopyFrom(x); err != nil {
			return err
		}
		if !w.IsContiguousAs(ChannelsLast) {
			t.Error("CopyFrom changed the layout back")
		}
		y := w.Conv2d(s.Adopt(Ones(1, 3, 1, 1)), nil, ConvOptions{})
		if err := y.Err(); err != nil {
			return err
		}
		g := FromFloat32(vals, 2, 3, 4, 5).SetRequiresGrad(true)
		defer g.Free()
		if err := g.Relayout(ChannelsLast); err == nil {
			t.Error("a tensor that requires gradient was relaid out in place")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
