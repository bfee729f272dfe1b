package augment

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

func testImage(w, h int) []float32 {
	pix := make([]float32, w*h)
	for i := range pix {
		pix[i] = float32(math.Sin(float64(i)*0.37)) + float32(i%w)*0.01
	}
	return pix
}

func TestApplyDeterministic(t *testing.T) {
	img := testImage(16, 12)
	cfg := Paper()
	a := cfg.Apply(img, 16, 12, "ct", seeded(7))
	b := cfg.Apply(img, 16, 12, "ct", seeded(7))
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different augmentations")
	}
	differ := false
	for s := uint64(8); s < 16 && !differ; s++ {
		differ = !slices.Equal(a, cfg.Apply(img, 16, 12, "ct", seeded(s)))
	}
	if !differ {
		t.Fatal("eight other seeds all gave the same augmentation")
	}
	if got := (Config{}).Apply(img, 16, 12, "ct", seeded(1)); !slices.Equal(got, img) {
		t.Fatal("zero config changed the image")
	}
}

func TestFlip(t *testing.T) {
	img := []float32{1, 2, 3, 4, 5, 6}
	f := slices.Clone(img)
	FlipHorizontal(f, 3, 2)
	if want := []float32{3, 2, 1, 6, 5, 4}; !slices.Equal(f, want) {
		t.Fatalf("flip = %v, want %v", f, want)
	}
	FlipHorizontal(f, 3, 2)
	if !slices.Equal(f, img) {
		t.Fatalf("flip twice = %v, want %v", f, img)
	}
	// X-ray flips are disabled by the paper config: no draw of many seeds may flip.
	cfg := Config{Flip: true, NoFlipModalities: []string{"XRay"}}
	big := testImage(8, 8)
	flipped := 0
	for s := uint64(0); s < 20; s++ {
		if !slices.Equal(cfg.Apply(big, 8, 8, "xray", seeded(s)), big) {
			t.Fatal("flipped an X-ray")
		}
		if !slices.Equal(cfg.Apply(big, 8, 8, "ct", seeded(s)), big) {
			flipped++
		}
	}
	if flipped == 0 || flipped == 20 {
		t.Fatalf("CT flipped %d of 20 times", flipped)
	}
}

func TestRotate(t *testing.T) {
	img := testImage(9, 7)
	if !slices.Equal(Rotate(img, 9, 7, 0), img) {
		t.Fatal("rotation by 0 changed the image")
	}
	// 90 degrees counter-clockwise on a square: output (x, y) = input (w-1-y, x).
	sq := testImage(5, 5)
	r := Rotate(sq, 5, 5, 90)
	for y := 0; y < 5; y++ {
		for x := 0; x < 5; x++ {
			if d := math.Abs(float64(r[y*5+x] - sq[x*5+4-y])); !(d <= 1e-5) {
				t.Fatalf("rot90 at (%d,%d) = %v, want %v", x, y, r[y*5+x], sq[x*5+4-y])
			}
		}
	}
	// Corners of a small rotation come from outside and take the minimum.
	big := testImage(9, 9)
	r = Rotate(big, 9, 9, 45)
	if r[0] != slices.Min(big) {
		t.Fatalf("corner after rotation = %v, want minimum %v", r[0], slices.Min(big))
	}
	// +a then -a leaves the centre pixel untouched.
	back := Rotate(Rotate(sq, 5, 5, 7), 5, 5, -7)
	if !(math.Abs(float64(back[12]-sq[12])) <= 1e-5) {
		t.Fatalf("centre changed: %v vs %v", back[12], sq[12])
	}
}

func TestShift(t *testing.T) {
	img := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	got := Shift(img, 3, 3, 1, -1)
	// output (x, y) = input (x+1, y-1); minimum 1 elsewhere.
	if want := []float32{1, 1, 1, 2, 3, 1, 5, 6, 1}; !slices.Equal(got, want) {
		t.Fatalf("shift = %v, want %v", got, want)
	}
	for s := uint64(0); s < 50; s++ {
		c := RandomCrop(img, 3, 3, 1, seeded(s))
		if len(c) != 9 {
			t.Fatal("crop changed the size")
		}
	}
}

func TestMixupSchedule(t *testing.T) {
	s := DefaultMixup()
	for _, tc := range []struct {
		iter int
		want bool
	}{{1, false}, {7000, false}, {7001, true}, {8000, true}, {10000, true}, {10001, false}} {
		if got := s.Active(tc.iter); got != tc.want {
			t.Errorf("Active(%d) = %v, want %v", tc.iter, got, tc.want)
		}
	}
	if (MixupSchedule{}).Active(0) {
		t.Error("zero schedule active at 0")
	}
}

func TestMixValues(t *testing.T) {
	const n, pixels = 4, 3
	batch := []float32{
		0, 0, 0,
		1, 2, 3,
		10, 20, 30,
		-1, -1, -1,
	}
	orig := slices.Clone(batch)
	lam, perm := DefaultMixup().Mix(batch, n, pixels, seeded(3))
	if lam < 0 || lam > 1 {
		t.Fatalf("lam %v", lam)
	}
	p := slices.Clone(perm)
	slices.Sort(p)
	if !slices.Equal(p, []int{0, 1, 2, 3}) {
		t.Fatalf("perm %v is not a permutation", perm)
	}
	for i := 0; i < n; i++ {
		for k := 0; k < pixels; k++ {
			want := lam*float64(orig[i*pixels+k]) + (1-lam)*float64(orig[perm[i]*pixels+k])
			if got := float64(batch[i*pixels+k]); !(math.Abs(got-want) <= 1e-6*math.Max(1, math.Abs(want))) {
				t.Fatalf("x_mix[%d][%d] = %v, want %v (lam %v, perm %v)", i, k, got, want, lam, perm)
			}
		}
	}
	// Same seed, same lam and perm.
	batch2 := slices.Clone(orig)
	lam2, perm2 := DefaultMixup().Mix(batch2, n, pixels, seeded(3))
	if lam2 != lam || !slices.Equal(perm, perm2) || !slices.Equal(batch, batch2) {
		t.Fatal("mixup not reproducible")
	}
	// Alpha 1 is a single uniform draw: lam equals the first Float64 of the same stream.
	if want := seeded(3).Float64(); lam != want {
		t.Fatalf("lam %v, want the uniform draw %v", lam, want)
	}
}

func TestBetaMoments(t *testing.T) {
	rng := seeded(11)
	const draws = 200000
	for _, tc := range []struct{ a, b, mean, variance float64 }{
		{1, 1, 0.5, 1.0 / 12},
		{2, 2, 0.5, 0.05},
		{0.4, 0.4, 0.5, 0.4 * 0.4 / (0.8 * 0.8 * 1.8)},
		{2, 5, 2.0 / 7, 10.0 / (49 * 8)},
	} {
		var sum, sq float64
		for i := 0; i < draws; i++ {
			x := Beta(rng, tc.a, tc.b)
			if x < 0 || x > 1 {
				t.Fatalf("Beta(%v,%v) draw %v", tc.a, tc.b, x)
			}
			sum += x
			sq += x * x
		}
		mean := sum / draws
		variance := sq/draws - mean*mean
		if !(math.Abs(mean-tc.mean) <= 0.005) || !(math.Abs(variance-tc.variance) <= 0.003) {
			t.Errorf("Beta(%v,%v): mean %.4f var %.4f, want %.4f %.4f", tc.a, tc.b, mean, variance, tc.mean, tc.variance)
		}
	}
}
