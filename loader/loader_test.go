package loader

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/maddr-project/maddr/augment"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
)

func phantomSamples(t testing.TB, scale float64) []dataset.Sample {
	t.Helper()
	cfg := phantom.DefaultConfig()
	cfg.Scale = scale
	cfg.Size = 64
	cfg.Seed = 3
	s, err := dataset.Open([]dataset.Spec{{Kind: "phantom", Scale: scale, Size: 64, Seed: &cfg.Seed}}, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func smallConfig(workers int) Config {
	return Config{
		Size: 16, Transform: Preprocess(preprocess.Config{Size: 16}),
		Augment: Augmentation(augment.Paper()), BatchSize: 5, Workers: workers, Seed: 42, DropLast: true,
	}
}

func collect(t *testing.T, seq func(func(Batch, error) bool)) []Batch {
	t.Helper()
	var out []Batch
	for b, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestDeterministicAcrossWorkers(t *testing.T) {
	samples := phantomSamples(t, 0.03)
	var ref []Batch
	for _, workers := range []int{1, 2, 5} {
		cfg := smallConfig(workers)
		cfg.Lazy = workers == 5 // also without the warm-up pass
		l, err := New(context.Background(), samples, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []Batch
		n := 0
		for b, err := range l.Train(context.Background(), 0) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b)
			if n++; n == 2*l.BatchesPerEpoch()+1 {
				break
			}
		}
		if ref == nil {
			ref = got
			continue
		}
		if !reflect.DeepEqual(got, ref) {
			t.Errorf("%d workers gave different batches than 1 worker", workers)
		}
	}
	if ref[0].Epoch != 0 || ref[len(ref)-1].Epoch != 2 {
		t.Errorf("epochs %d..%d, want 0..2", ref[0].Epoch, ref[len(ref)-1].Epoch)
	}
	// Augmentation is on: the same sample differs between epochs.
	l, _ := New(context.Background(), samples, smallConfig(2))
	x, _ := l.Input(0)
	e0 := augmentedOf(t, l, 0, 0)
	e1 := augmentedOf(t, l, 1, 0)
	if reflect.DeepEqual(e0, e1) && reflect.DeepEqual(e0, x) {
		t.Error("augmentation changed nothing across epochs")
	}
}

func augmentedOf(t *testing.T, l *Loader, epoch, idx int) []float32 {
	pix := l.Size() * l.Size()
	for b, err := range l.Epoch(context.Background(), epoch) {
		if err != nil {
			t.Fatal(err)
		}
		for k, i := range b.Index {
			if i == idx {
				return b.X[k*pix : (k+1)*pix]
			}
		}
	}
	return nil // dropped by drop-last in this epoch
}

func TestEpochCoversEverySampleOnce(t *testing.T) {
	samples := phantomSamples(t, 0.03)
	cfg := smallConfig(3)
	cfg.DropLast = false
	l, err := New(context.Background(), samples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for epoch := 0; epoch < 2; epoch++ {
		var seen []int
		for _, b := range collect(t, l.Epoch(context.Background(), epoch)) {
			seen = append(seen, b.Index...)
		}
		sort.Ints(seen)
		for i, v := range seen {
			if v != i {
				t.Fatalf("epoch %d: sorted indices %v are not 0..%d", epoch, seen, l.Len()-1)
			}
		}
		if len(seen) != l.Len() {
			t.Fatalf("epoch %d saw %d of %d samples", epoch, len(seen), l.Len())
		}
	}
	if reflect.DeepEqual(l.Order(0), l.Order(1)) {
		t.Error("epochs 0 and 1 have the same order")
	}
	// Eval: in order, unaugmented, labels and classes as the samples say.
	pix := 16 * 16
	next := 0
	for _, b := range collect(t, l.Eval(context.Background())) {
		for k, i := range b.Index {
			if i != next {
				t.Fatalf("eval index %d, want %d", i, next)
			}
			next++
			want, _ := l.Input(i)
			if !reflect.DeepEqual(b.X[k*pix:(k+1)*pix], want) {
				t.Fatalf("eval sample %d is not its preprocessed input", i)
			}
			s := l.Samples()[i]
			v := l.Vocabs()
			if b.Label[k] != int64(s.Label) || v.Organ[b.Organ[k]] != s.Organ || v.Modality[b.Modality[k]] != s.Modality ||
				v.Group[b.Group[k]] != s.Group {
				t.Fatalf("eval sample %d: classes %d/%d/%d label %d for %+v", i, b.Organ[k], b.Modality[k], b.Group[k], b.Label[k], s)
			}
		}
	}
	if next != l.Len() {
		t.Errorf("eval saw %d of %d", next, l.Len())
	}
	if !reflect.DeepEqual(l.Vocabs().Organ, dataset.Vocab{"liver", "lung"}) || !reflect.DeepEqual(l.Vocabs().Modality, dataset.Vocab{"ct", "xray"}) {
		t.Errorf("vocabularies %+v, want the paper's order", l.Vocabs())
	}
}

func TestDropLast(t *testing.T) {
	samples := phantomSamples(t, 0.03)[:12]
	for _, tc := range []struct {
		drop  bool
		sizes []int
	}{{true, []int{5, 5}}, {false, []int{5, 5, 2}}} {
		cfg := smallConfig(2)
		cfg.DropLast = tc.drop
		l, err := New(context.Background(), samples, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, b := range collect(t, l.Epoch(context.Background(), 0)) {
			sizes = append(sizes, b.Len())
			if len(b.X) != b.Len()*16*16 || len(b.Label) != b.Len() {
				t.Errorf("batch of %d with %d values", b.Len(), len(b.X))
			}
		}
		if !reflect.DeepEqual(sizes, tc.sizes) || l.BatchesPerEpoch() != len(tc.sizes) {
			t.Errorf("drop-last %v: sizes %v (BatchesPerEpoch %d), want %v", tc.drop, sizes, l.BatchesPerEpoch(), tc.sizes)
		}
	}
	cfg := smallConfig(2)
	cfg.BatchSize = 20
	l, _ := New(context.Background(), samples, cfg)
	for _, err := range l.Train(context.Background(), 0) {
		if err == nil || !strings.Contains(err.Error(), "no batch") {
			t.Errorf("too few samples for one batch: err = %v", err)
		}
		break
	}
}

func TestCacheLimit(t *testing.T) {
	samples := phantomSamples(t, 0.03)
	cfg := smallConfig(3)
	cfg.CacheBytes = 7*16*16*4 + 100
	l, err := New(context.Background(), samples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	collect(t, l.Epoch(context.Background(), 0))
	bytes, n := l.CacheUsage()
	if n != 7 || bytes != 7*16*16*4 || bytes > cfg.CacheBytes {
		t.Errorf("cache holds %d images in %d bytes, limit %d", n, bytes, cfg.CacheBytes)
	}
	cfg.CacheBytes = -1
	l, _ = New(context.Background(), samples, cfg)
	collect(t, l.Epoch(context.Background(), 0))
	if bytes, n := l.CacheUsage(); n != 0 || bytes != 0 {
		t.Errorf("disabled cache holds %d images", n)
	}
}

func TestBadFiles(t *testing.T) {
	samples, err := dataset.Open([]dataset.Spec{{Kind: "folder", Root: "../dataset/testdata/bad/folder", Organ: "lung", Modality: "ct"}},
		dataset.Options{SkipBad: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Size: 8, Transform: Preprocess(preprocess.Config{Size: 8}), BatchSize: 2, Workers: 2}
	_, err = New(context.Background(), samples, cfg)
	var bad *dataset.BadFilesError
	if !errors.As(err, &bad) || len(bad.Problems) != 2 || !strings.Contains(err.Error(), "truncated.png") ||
		!strings.Contains(err.Error(), "garbage.png") {
		t.Fatalf("err = %v, want both undecodable files listed", err)
	}
	var logged int
	cfg.SkipBad = true
	cfg.Logf = func(string, ...any) { logged++ }
	l, err := New(context.Background(), samples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != len(samples)-2 || logged != 2 {
		t.Errorf("SkipBad kept %d of %d, logged %d", l.Len(), len(samples), logged)
	}
	for i := range l.Len() {
		if _, err := l.Input(i); err != nil {
			t.Errorf("kept sample %d: %v", i, err)
		}
	}
	// Lazy: the bad file ends iteration with its error.
	cfg.SkipBad, cfg.Lazy = false, true
	l, err = New(context.Background(), samples, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var iterErr error
	for _, err := range l.Eval(context.Background()) {
		if err != nil {
			iterErr = err
		}
	}
	if iterErr == nil || !strings.Contains(iterErr.Error(), ".png") {
		t.Errorf("lazy loader: err = %v", iterErr)
	}
}

func TestBreakStopsWorkers(t *testing.T) {
	samples := phantomSamples(t, 0.03)
	before := runtime.NumGoroutine()
	l, err := New(context.Background(), samples, smallConfig(4))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		n := 0
		for _, err := range l.Train(context.Background(), 0) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 3 {
				break
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, err := range l.Train(ctx, 0) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled context: err = %v", err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines left running (had %d)", g, before)
	}
}

// BenchmarkLoader64 measures images/s of the full path (phantom 128x128 ->
// resize 256, crop 224, resize 64 -> batches of 32), with the cache off
// (every image preprocessed again) and warm.
func BenchmarkLoader64(b *testing.B) {
	seed := uint64(1)
	samples, err := dataset.Open([]dataset.Spec{{Kind: "phantom", Scale: 0.2, Seed: &seed}}, dataset.Options{Splits: []dataset.Split{dataset.Train}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		cache int64
	}{{"cold", -1}, {"cached", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{Size: 64, Transform: Preprocess(preprocess.Default()), BatchSize: 32, DropLast: true,
				CacheBytes: bc.cache, Lazy: bc.cache < 0}
			l, err := New(context.Background(), samples, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			images := 0
			n := 0
			for batch, err := range l.Train(context.Background(), 0) {
				if err != nil {
					b.Fatal(err)
				}
				images += batch.Len()
				if n++; n >= b.N {
					break
				}
			}
			b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
