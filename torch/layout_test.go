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

func TestAutocastBFloat16Conv(t *testing.T) {
	err := Run(func(s *Scope) error {
		g, err := NewGenerator(3)
		if err != nil {
			return err
		}
		x := s.Adopt(Randn(g, 2, 3, 8, 8))
		w := s.Adopt(Randn(g, 4, 3, 3, 3))
		want := x.Conv2d(w, nil, ConvOptions{Padding: [2]int64{1, 1}})
		var got *Tensor
		if err := NoGrad(func() error {
			return Autocast(BFloat16, func() error {
				if !AutocastEnabled() {
					t.Error("autocast not enabled inside Autocast")
				}
				got = x.Conv2d(w, nil, ConvOptions{Padding: [2]int64{1, 1}})
				return got.Err()
			})
		}); err != nil {
			return err
		}
		if AutocastEnabled() {
			t.Error("autocast still enabled after Autocast returned")
		}
		if got.DType() != BFloat16 {
			t.Errorf("conv under bf16 autocast gave %v, want bfloat16", got.DType())
		}
		// bf16 keeps 8 significant bits: relative L2 error ~2^-8, far above
		// float32's rounding, far below a wrong result.
		rel, err := got.To(Float32).Sub(want).Norm(nil, false).Div(want.Norm(nil, false)).Item()
		if err != nil {
			return err
		}
		if rel > 2e-2 || rel == 0 {
			t.Errorf("bf16 conv relative error %g, want in (0, 2e-2]", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInferenceModeRecordsNothing(t *testing.T) {
	err := Run(func(s *Scope) error {
		w := s.Adopt(Ones(3).SetRequiresGrad(true))
		var y *Tensor
		if err := InferenceMode(func() error {
			y = w.MulScalar(2)
			return y.Err()
		}); err != nil {
			return err
		}
		if y.RequiresGrad() {
			t.Error("result of an op in inference mode requires grad")
		}
		if !GradEnabled() {
			t.Error("grad mode not restored after InferenceMode")
		}
		if z := w.MulScalar(2); !z.RequiresGrad() {
			t.Error("ops after InferenceMode are not recorded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
