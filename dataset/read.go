package dataset

import (
	"fmt"
	"strings"
	"sync"

	"github.com/maddr-project/maddr/medimg"
)

// isVolumePath tells whether a path names a file read slice by slice.
func isVolumePath(path string) bool {
	p := strings.ToLower(path)
	return strings.HasSuffix(p, ".nii") || strings.HasSuffix(p, ".nii.gz")
}

// Reader decodes samples. It keeps a few volumes open because consecutive
// samples usually come from the same volume and reopening a .nii.gz means
// decompressing it again. It is safe for concurrent use.
type Reader struct {
	// MaxOpen is the number of volumes kept open; 0 means 4.
	MaxOpen int

	mu   sync.Mutex
	open []*openVolume // most recently used last
}

type openVolume struct {
	path string
	mu   sync.Mutex // a Volume is not required to allow concurrent Slice calls
	vol  medimg.Volume
	err  error
	refs int
	gone bool // evicted; the last user closes it
	once sync.Once
}

// Load returns the image of s with the sample's overrides applied (HU kind,
// nominal range). In-memory images are returned as they are: callers must not
// modify Pix.
func (r *Reader) Load(s Sample) (medimg.Image, error) {
	if s.Image != nil {
		return *s.Image, nil
	}
	if s.Path == "" {
		return medimg.Image{}, fmt.Errorf("sample %q has neither a path nor an image", s.ID)
	}
	var img medimg.Image
	var err error
	if isVolumePath(s.Path) {
		img, err = r.slice(s.Path, s.Slice)
	} else {
		img, err = readImage(s.Path, s.Slice)
	}
	if err != nil {
		return medimg.Image{}, err
	}
	if s.HU {
		img.Kind = medimg.KindHU
	}
	if s.Hi > s.Lo {
		img.Lo, img.Hi = s.Lo, s.Hi
	}
	return img, nil
}

func readImage(path string, index int) (medimg.Image, error) {
	imgs, err := medimg.ReadFile(path)
	if err != nil {
		return medimg.Image{}, err
	}
	if index < 0 || index >= len(imgs) {
		return medimg.Image{}, fmt.Errorf("%s: image %d requested but the file holds %d", path, index, len(imgs))
	}
	return imgs[index], nil
}

func (r *Reader) slice(path string, index int) (medimg.Image, error) {
	ov := r.acquire(path)
	defer r.release(ov)
	ov.once.Do(func() { ov.vol, ov.err = medimg.OpenVolume(path) })
	if ov.err != nil {
		return medimg.Image{}, ov.err
	}
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if n := ov.vol.NumSlices(); index < 0 || index >= n {
		return medimg.Image{}, fmt.Errorf("%s: slice %d requested but the volume has %d", path, index, n)
	}
	return ov.vol.Slice(index)
}

func (r *Reader) acquire(path string) *openVolume {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ov := range r.open {
		if ov.path == path {
			r.open = append(append(r.open[:i:i], r.open[i+1:]...), ov)
			ov.refs++
			return ov
		}
	}
	ov := &openVolume{path: path, refs: 1}
	r.open = append(r.open, ov)
	maxOpen := r.MaxOpen
	if maxOpen <= 0 {
		maxOpen = 4
	}
	for len(r.open) > maxOpen {
		old := r.open[0]
		r.open = r.open[1:]
		old.gone = true
		if old.refs == 0 {
			old.close()
		}
	}
	return ov
}

func (r *Reader) release(ov *openVolume) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ov.refs--
	if ov.refs == 0 && ov.gone {
		ov.close()
	}
}

func (ov *openVolume) close() {
	// Wait for a concurrent open to finish so its handle is not leaked.
	ov.once.Do(func() { ov.err = fmt.Errorf("%s: volume closed", ov.path) })
	if ov.vol != nil {
		ov.vol.Close()
		ov.vol = nil
	}
}

// Close closes every open volume.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ov := range r.open {
		ov.gone = true
		if ov.refs == 0 {
			ov.close()
		}
	}
	r.open = nil
	return nil
}
