// Package pthfile reads float32 tensors from files written by PyTorch's
// torch.save: the zip archive of PyTorch >= 1.6 and the legacy format of
// older releases (torchvision's 2017 vgg19-dcbb9e9d.pth). It reads the
// state_dict's structure and only the tensors asked for, never running code
// from the file; every malformed input is an error naming the file.
package pthfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// How it works: a file written by torch.save is a pickle whose tensors point, through
// "persistent ids", at storages kept outside the pickle: in a zip archive
// (PyTorch >= 1.6) as one entry per storage, or in the legacy format
// (torchvision's 2017 vgg19-dcbb9e9d.pth) as raw blocks after the pickle.
// The pickle is interpreted by gopickle's unpickler with our own hooks, so
// storages are only located while unpickling and only the tensors asked for
// are read: VGG19's classifier (~480 MB of the 548 MB file) is skipped.

// storageType stands for torch.FloatStorage and its siblings in the pickle.
type storageType struct {
	name     string
	elemSize int64
}

var storageTypes = map[string]int64{
	"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2,
	"LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
	"ByteStorage": 1, "BoolStorage": 1,
}

// storageRef is one storage named by a persistent id.
type storageRef struct {
	key   string
	typ   storageType
	numel int64
}

// tensorRef is a tensor as the pickle describes it, before its data is read.
type tensorRef struct {
	storage *storageRef
	offset  int64
	shape   []int64
	stride  []int64
}

// rebuildTensor implements torch._utils._rebuild_tensor (4 arguments, PyTorch
// < 0.4) and _rebuild_tensor_v2 (6 or 7 arguments).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("tensor record has %d fields, want at least 4", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("tensor record does not start with a storage (%T)", args[0])
	}
	off, err := pyInt(args[1])
	if err != nil {
		return nil, fmt.Errorf("tensor storage offset: %w", err)
	}
	shape, err := pyInts(args[2])
	if err != nil {
		return nil, fmt.Errorf("tensor size: %w", err)
	}
	stride, err := pyInts(args[3])
	if err != nil {
		return nil, fmt.Errorf("tensor stride: %w", err)
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("tensor size %v and stride %v differ in rank", shape, stride)
	}
	return &tensorRef{storage: st, offset: off, shape: shape, stride: stride}, nil
}

// rebuildParameter implements torch._utils._rebuild_parameter: the data is its first argument.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("empty parameter record")
	}
	return args[0], nil
}

// torchSize implements torch.Size(tuple).
type torchSize struct{}

func (torchSize) Call(args ...any) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("torch.Size takes 1 argument, got %d", len(args))
	}
	return args[0], nil
}

func pyInt(v any) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case *big.Int:
		if n.IsInt64() {
			return n.Int64(), nil
		}
	}
	return 0, fmt.Errorf("want an integer, got %T", v)
}

func pyInts(v any) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case *types.Tuple:
		items = *t
	case *types.List:
		items = *t
	default:
		return nil, fmt.Errorf("want a tuple of integers, got %T", v)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, err := pyInt(it)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func findTorchClass(module, name string) (any, error) {
	switch module + "." + name {
	case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
		return rebuildTensor{}, nil
	case "torch._utils._rebuild_parameter":
		return rebuildParameter{}, nil
	case "torch.Size":
		return torchSize{}, nil
	}
	// A file saved from GPU tensors names torch.cuda's storage classes; the
	// bytes on disk are the same.
	if module == "torch" || module == "torch.cuda" {
		if size, ok := storageTypes[name]; ok {
			return storageType{name: name, elemSize: size}, nil
		}
	}
	// Anything else (metadata objects, for example) is kept as an opaque object.
	return types.NewGenericClass(module, name), nil
}

// unpickle runs the unpickler, turning a panic inside it (malformed input the
// library did not anticipate) into an error: user files must never crash the program.
func unpickle(r io.Reader, persistent func(any) (any, error)) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, fmt.Errorf("malformed pickle: %v", p)
		}
	}()
	u := pickle.NewUnpickler(r)
	u.FindClass = findTorchClass
	u.PersistentLoad = persistent
	return u.Load()
}

// persistentStorage decodes a storage persistent id
// ('storage', type, key, location, numel[, view]) and remembers it by key.
func persistentStorage(seen map[string]*storageRef) func(any) (any, error) {
	return func(id any) (any, error) {
		t, ok := id.(*types.Tuple)
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("unexpected persistent id %v", id)
		}
		if kind, _ := t.Get(0).(string); kind != "storage" {
			return nil, fmt.Errorf("unexpected persistent id kind %v", t.Get(0))
		}
		typ, ok := t.Get(1).(storageType)
		if !ok {
			return nil, fmt.Errorf("unsupported storage class %v", t.Get(1))
		}
		key, ok := t.Get(2).(string)
		if !ok {
			return nil, fmt.Errorf("storage key %v is not a string", t.Get(2))
		}
		numel, err := pyInt(t.Get(4))
		if err != nil {
			return nil, fmt.Errorf("storage %s size: %w", key, err)
		}
		if t.Len() > 5 && t.Get(5) != nil {
			return nil, fmt.Errorf("storage %s is a view of another storage (not supported)", key)
		}
		if s, ok := seen[key]; ok {
			return s, nil
		}
		s := &storageRef{key: key, typ: typ, numel: numel}
		seen[key] = s
		return s, nil
	}
}

// stateDict turns the unpickled object into name -> tensorRef, keeping only tensors.
func stateDict(obj any) (map[string]*tensorRef, error) {
	out := map[string]*tensorRef{}
	add := func(k, v any) {
		name, ok := k.(string)
		if !ok {
			return
		}
		if t, ok := v.(*tensorRef); ok {
			out[name] = t
		}
	}
	switch d := obj.(type) {
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			add(entry.Key, entry.Value)
		}
	case *types.Dict:
		for _, e := range *d {
			add(e.Key, e.Value)
		}
	default:
		return nil, fmt.Errorf("the file holds a %T, not a state_dict (save model.state_dict(), not the model)", obj)
	}
	return out, nil
}

// decodeFloat32 reads tensor ref's elements from the raw bytes of its whole storage.
func decodeFloat32(name string, ref *tensorRef, read func(off, n int64) ([]byte, error)) ([]float32, error) {
	if ref.storage.typ.name != "FloatStorage" {
		return nil, fmt.Errorf("%s is stored as %s; only float32 weights are supported", name, ref.storage.typ.name)
	}
	if ref.storage.numel < 0 || ref.storage.numel > math.MaxInt64/4 {
		return nil, fmt.Errorf("%s: its storage declares %d elements", name, ref.storage.numel)
	}
	// Bounded by the storage's size at every step, so that hostile sizes
	// cannot overflow.
	numel := int64(1)
	for _, d := range ref.shape {
		if d < 0 || (d > 0 && numel > ref.storage.numel/d) {
			return nil, fmt.Errorf("%s: size %v does not fit its storage of %d elements", name, ref.shape, ref.storage.numel)
		}
		numel *= d
	}
	// Weights in a state_dict are dense; a strided view would need a gather
	// that no VGG checkpoint requires.
	want := int64(1)
	for i := len(ref.shape) - 1; i >= 0; i-- {
		if ref.shape[i] != 1 && ref.stride[i] != want {
			return nil, fmt.Errorf("%s is not contiguous (size %v stride %v)", name, ref.shape, ref.stride)
		}
		want *= ref.shape[i]
	}
	if ref.offset < 0 || ref.offset > ref.storage.numel-numel {
		return nil, fmt.Errorf("%s: elements %d..%d lie outside its storage of %d", name, ref.offset, ref.offset+numel, ref.storage.numel)
	}
	raw, err := read(ref.offset*4, numel*4)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]float32, numel)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out, nil
}

// Tensor is a float32 array read from a file.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// Format is the layout of a torch.save file.
type Format int

const (
	NotPTH Format = iota // neither layout
	Zip                  // PyTorch >= 1.6: a zip archive holding data.pkl and one entry per storage
	Legacy               // older: pickles followed by raw storage blocks
)

// Detect tells the layout of a file from its first bytes (2 suffice).
func Detect(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return Zip
	case len(head) >= 2 && head[0] == 0x80 && head[1] <= pickle.HighestProtocol:
		return Legacy
	}
	return NotPTH
}

// ReadFile reads the tensors named in want (those the file has) from the
// torch.save file at path, and the shape of every tensor of its state_dict.
func ReadFile(path string, want []string) (map[string]Tensor, map[string][]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	return Read(f, st.Size(), path, want)
}

// Read is ReadFile for a file of size bytes read through r; name is used in
// error messages.
func Read(r io.ReaderAt, size int64, name string, want []string) (map[string]Tensor, map[string][]int64, error) {
	head := make([]byte, 4)
	n, _ := r.ReadAt(head, 0)
	switch Detect(head[:n]) {
	case Zip:
		return readZip(r, size, name, want)
	case Legacy:
		return readLegacy(r, size, name, want)
	}
	return nil, nil, fmt.Errorf("%s: not a PyTorch .pth file (zip or legacy)", name)
}

// readZip reads the wanted tensors of a torch.save zip archive.
func readZip(r io.ReaderAt, size int64, path string, want []string) (map[string]Tensor, map[string][]int64, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a readable PyTorch zip archive (truncated or corrupted download?): %w", path, err)
	}
	var pkl *zip.File
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkl = f
		}
	}
	if pkl == nil {
		return nil, nil, fmt.Errorf("%s: zip archive without <name>/data.pkl: not a torch.save file", path)
	}
	if _, ok := entries[strings.TrimSuffix(pkl.Name, "data.pkl")+"constants.pkl"]; ok {
		return nil, nil, fmt.Errorf("%s is a TorchScript archive; save the model's state_dict with torch.save instead", path)
	}
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl") + "data/"
	rc, err := pkl.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	// Read whole (it grows with the bytes really there), so that it can be
	// scanned before it is unpickled.
	pklData, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading %s: %w", path, pkl.Name, err)
	}
	ps := &pickles{r: bytes.NewReader(pklData), size: int64(len(pklData))}
	obj, err := ps.next(persistentStorage(map[string]*storageRef{}))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading %s: %w", path, pkl.Name, err)
	}
	refs, err := stateDict(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]Tensor{}
	shapes := shapesOf(refs)
	for _, name := range want {
		ref, ok := refs[name]
		if !ok {
			continue
		}
		entry, ok := entries[prefix+ref.storage.key]
		if !ok {
			return nil, nil, fmt.Errorf("%s: storage %s of %s is missing from the archive", path, ref.storage.key, name)
		}
		data, err := decodeFloat32(name, ref, func(off, n int64) ([]byte, error) {
			if int64(entry.UncompressedSize64) < off+n {
				return nil, fmt.Errorf("storage entry holds %d bytes, need %d", entry.UncompressedSize64, off+n)
			}
			r, err := entry.Open()
			if err != nil {
				return nil, err
			}
			defer r.Close()
			if _, err := io.CopyN(io.Discard, r, off); err != nil {
				return nil, fmt.Errorf("reading storage: %w", err)
			}
			// The entry's declared size may lie: grow the buffer with the
			// bytes actually there instead of allocating n up front.
			buf, err := io.ReadAll(io.LimitReader(r, n))
			if err != nil {
				return nil, fmt.Errorf("reading storage: %w", err)
			}
			if int64(len(buf)) != n {
				return nil, fmt.Errorf("reading storage: %d of %d bytes", len(buf), n)
			}
			return buf, nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		out[name] = Tensor{Shape: ref.shape, Data: data}
	}
	return out, shapes, nil
}

// legacyMagic is the number torch.save's pre-1.6 format starts with.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// readLegacy reads the wanted tensors of a pre-1.6 torch.save file:
// pickles of the magic number, the protocol version, system information, the
// object itself and the list of storage keys, followed for each key by its
// element count (int64) and its raw little-endian elements.
func readLegacy(f io.ReaderAt, size int64, path string, want []string) (map[string]Tensor, map[string][]int64, error) {
	cr := &pickles{r: f, size: size}
	noPersistent := func(any) (any, error) { return nil, errors.New("unexpected persistent id") }
	magic, err := cr.next(noPersistent)
	if n, ok := magic.(*big.Int); err != nil || !ok || n.Cmp(legacyMagic) != 0 {
		return nil, nil, fmt.Errorf("%s: not a PyTorch .pth file (no legacy magic number)", path)
	}
	if v, err := cr.next(noPersistent); err != nil {
		return nil, nil, fmt.Errorf("%s: reading the format version: %w", path, err)
	} else if n, _ := pyInt(v); n != 1001 {
		return nil, nil, fmt.Errorf("%s: unsupported legacy PyTorch format version %v", path, v)
	}
	info, err := cr.next(noPersistent)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading system information: %w", path, err)
	}
	if d, ok := info.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le == false {
			return nil, nil, fmt.Errorf("%s was written on a big-endian machine (not supported)", path)
		}
	}
	seen := map[string]*storageRef{}
	obj, err := cr.next(persistentStorage(seen))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the state_dict: %w", path, err)
	}
	keysObj, err := cr.next(noPersistent)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: reading the storage list (truncated file?): %w", path, err)
	}
	keyList, ok := keysObj.(*types.List)
	if !ok {
		return nil, nil, fmt.Errorf("%s: storage list is a %T", path, keysObj)
	}
	refs, err := stateDict(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	// Walk the storage blocks by their headers, reading only 8 bytes per block.
	dataAt := map[string]int64{}
	off := cr.off
	var hdr [8]byte
	for _, k := range *keyList {
		key, ok := k.(string)
		if !ok {
			return nil, nil, fmt.Errorf("%s: storage key %v is not a string", path, k)
		}
		s, ok := seen[key]
		if !ok {
			return nil, nil, fmt.Errorf("%s: storage %s is listed but never used", path, key)
		}
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, nil, fmt.Errorf("%s: storage %s header at byte %d: %w (truncated file?)", path, key, off, err)
		}
		n := int64(binary.LittleEndian.Uint64(hdr[:]))
		if n != s.numel {
			return nil, nil, fmt.Errorf("%s: storage %s holds %d elements, the pickle says %d", path, key, n, s.numel)
		}
		// Checked before adding, so that a hostile count cannot overflow off.
		if n < 0 || n > (size-off-8)/s.typ.elemSize {
			return nil, nil, fmt.Errorf("%s: file is %d bytes, storage %s at byte %d needs %d elements of %d bytes (truncated download?)",
				path, size, key, off, n, s.typ.elemSize)
		}
		dataAt[key] = off + 8
		off += 8 + n*s.typ.elemSize
	}
	out := map[string]Tensor{}
	for _, name := range want {
		ref, ok := refs[name]
		if !ok {
			continue
		}
		base, ok := dataAt[ref.storage.key]
		if !ok {
			return nil, nil, fmt.Errorf("%s: storage %s of %s is not in the storage list", path, ref.storage.key, name)
		}
		data, err := decodeFloat32(name, ref, func(o, n int64) ([]byte, error) {
			buf := make([]byte, n)
			if _, err := f.ReadAt(buf, base+o); err != nil {
				return nil, err
			}
			return buf, nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		out[name] = Tensor{Shape: ref.shape, Data: data}
	}
	return out, shapesOf(refs), nil
}

func shapesOf(refs map[string]*tensorRef) map[string][]int64 {
	out := map[string][]int64{}
	for k, r := range refs {
		out[k] = r.shape
	}
	return out
}
