package dataset

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Folder reads <Root>/train/normal, val/normal, val/abnormal, test/normal
// and test/abnormal. A missing directory is an error only when its split is
// requested. Abnormal training images are never used (the models learn
// normality only), so train/abnormal is not read.
type Folder struct {
	Root            string
	Organ, Modality string
	Group           string // default organ-modality
}

func (f *Folder) Name() string { return "folder:" + f.Root }

// folderDirs are the sub-directories per split and label.
var folderDirs = []struct {
	split Split
	label Label
	dir   string
}{
	{Train, Normal, "train/normal"},
	{Val, Normal, "val/normal"},
	{Val, Abnormal, "val/abnormal"},
	{Test, Normal, "test/normal"},
	{Test, Abnormal, "test/abnormal"},
}

func (f *Folder) Samples(splits []Split) ([]Sample, []Problem, error) {
	if _, err := os.Stat(f.Root); err != nil {
		return nil, nil, fmt.Errorf("folder source: %w", err)
	}
	organ, modality := NormalizeOrgan(f.Organ), NormalizeModality(f.Modality)
	group := orDefault(f.Group, groupName(organ, modality))
	var samples []Sample
	var probs []Problem
	for _, d := range folderDirs {
		if !wants(splits, d.split) {
			continue
		}
		dir := filepath.Join(f.Root, filepath.FromSlash(d.dir))
		files, err := listImages(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("folder source: split %s needs %s: %w", d.split, dir, err)
		}
		for _, file := range files {
			if p, bad := checkFile(file); bad {
				probs = append(probs, p)
				continue
			}
			samples = append(samples, Sample{
				Path: file, Organ: organ, Modality: modality, Group: group,
				Split: d.split, Label: d.label, ID: group + "/" + d.dir + "/" + filepath.Base(file),
			})
		}
	}
	probs = append(probs, checkSplits(f.Name(), samples, splits)...)
	return samples, probs, nil
}

// ignoredExt are side files commonly found next to images.
var ignoredExt = map[string]bool{
	".txt": true, ".csv": true, ".json": true, ".md": true, ".db": true, ".ini": true, ".xml": true, ".zip": true,
}

// listImages returns the image files directly inside dir, sorted. Hidden
// files (including the "._" files of macOS archives) and text side files are
// skipped; anything else is treated as an image and left for the reader to
// judge, since DICOM files often have no extension.
func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() || ignoredExt[strings.ToLower(filepath.Ext(name))] {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files)
	return files, nil
}

// checkFile finds problems visible without decoding: a missing, unreadable
// or zero-byte file.
func checkFile(path string) (Problem, bool) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Problem{Path: path, Err: errors.New("file does not exist")}, true
	case err != nil:
		return Problem{Path: path, Err: err}, true
	case st.IsDir():
		return Problem{Path: path, Err: errors.New("is a directory, not an image")}, true
	case st.Size() == 0:
		return Problem{Path: path, Err: errors.New("zero-byte file")}, true
	}
	return Problem{}, false
}
