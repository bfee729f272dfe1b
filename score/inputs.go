package score

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/shard"
)

// Unit is what a shard takes whole: one file, or the DICOM files of one
// folder (a series, summarised together).
type Unit struct {
	// Key names the unit: the file's path or the folder's.
	Key string
	// Files are the unit's files in name order.
	Files []string
	// Series marks a folder's DICOM candidates.
	Series bool
	// named: the file was named on the command line (so a file that is no
	// image is an error rather than a stray file in a folder).
	named bool
}

// Expansion is the result of Expand.
type Expansion struct {
	Units []Unit
	// Skipped are files found in folders that are not images by name.
	Skipped []string
}

// Expand turns command-line paths into units, sorted by key and without
// duplicates. Files are taken as they are; folders are walked (hidden
// entries skipped): PNG, JPEG and NIfTI files are units of their own, and
// the files of a folder that may be DICOM (.dcm, .dicom, .ima or no
// extension) form one series unit. Only names are looked at, so every shard
// of a job expands an archive the same way without opening its files.
func Expand(paths []string) (Expansion, error) {
	var ex Expansion
	units := map[string]*Unit{}
	add := func(key, file string, series, named bool) {
		u, ok := units[key]
		if !ok {
			u = &Unit{Key: key, Series: series, named: named}
			units[key] = u
		}
		for _, f := range u.Files {
			if f == file {
				return
			}
		}
		u.Files = append(u.Files, file)
	}
	for _, p := range paths {
		p = filepath.Clean(p)
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return ex, fmt.Errorf("%s does not exist", p)
			}
			return ex, err
		}
		if !st.IsDir() {
			add(p, p, false, true)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			switch kindByName(path) {
			case byNameImage:
				add(path, path, false, false)
			case byNameDICOM:
				add(filepath.Dir(path), path, true, false)
			default:
				ex.Skipped = append(ex.Skipped, path)
			}
			return nil
		})
		if err != nil {
			return ex, fmt.Errorf("listing %s: %w", p, err)
		}
	}
	for _, u := range units {
		sort.Strings(u.Files)
		ex.Units = append(ex.Units, *u)
	}
	sort.Slice(ex.Units, func(i, j int) bool { return ex.Units[i].Key < ex.Units[j].Key })
	return ex, nil
}

const (
	byNameOther = iota
	byNameImage
	byNameDICOM
)

func kindByName(path string) int {
	name := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(name, ".nii.gz"):
		return byNameImage
	}
	switch filepath.Ext(name) {
	case ".png", ".jpg", ".jpeg", ".nii":
		return byNameImage
	case ".dcm", ".dicom", ".ima", "":
		return byNameDICOM
	}
	return byNameOther
}

// Shard is part i (from 1) of n parts of a job (see package shard); units
// are assigned by a stable hash of their key.
type Shard = shard.Shard

// ParseShard reads "i/n" with 1 <= i <= n; a job array counting from 0
// passes $((INDEX+1))/n.
func ParseShard(s string) (Shard, error) { return shard.Parse(s) }

// Select keeps the units of shard s.
func Select(units []Unit, s Shard) []Unit {
	var out []Unit
	for _, u := range units {
		if s.OwnsKey(u.Key) {
			out = append(out, u)
		}
	}
	return out
}

// ReadOptions say how to decode inputs.
type ReadOptions struct {
	// HU marks NIfTI values as Hounsfield units (NIfTI cannot say so), so
	// CT windows apply, as the dataset sources' hu setting does.
	HU bool
}

// ReadUnit decodes the images of u in order and passes each to emit. A file
// that cannot be read becomes one Input carrying the error; a file found in
// a folder that turns out not to be an image at all is passed over.
func ReadUnit(u Unit, o ReadOptions, emit func(Input) error) error {
	var opts medimg.Options
	if o.HU {
		opts.NIfTIKind = medimg.KindHU
	}
	for _, f := range u.Files {
		volume := ""
		if u.Series {
			volume = u.Key
		}
		v, err := medimg.OpenVolumeWith(f, opts)
		if err != nil {
			if u.Series && !u.named && errors.Is(err, medimg.ErrUnsupported) && filepath.Ext(f) == "" {
				continue // e.g. a README beside the DICOM files
			}
			if err := emit(Input{Path: f, Volume: volume, Err: err}); err != nil {
				return err
			}
			continue
		}
		n := v.NumSlices()
		if n > 1 && volume == "" {
			volume = f
		}
		for i := 0; i < n; i++ {
			img, err := v.Slice(i)
			if err := emit(Input{Image: img, Path: f, Slice: i, Volume: volume, Err: err}); err != nil {
				v.Close()
				return err
			}
		}
		v.Close()
	}
	return nil
}
