package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/maddr-project/maddr/archive"
)

// IsDICOMwebURL tells whether a 'maddr score' input names a DICOMweb study
// or series rather than a file.
func IsDICOMwebURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// Download retrieves a DICOMweb study or series URL with WADO-RS into dir,
// one folder per series (dir/<series UID>/<SOP instance UID>.dcm), and
// returns the folders, which score.Expand turns into series units. Results
// written by maddr are left out.
func Download(ctx context.Context, d *archive.DICOMweb, ref archive.SeriesRef, dir string) ([]string, error) {
	files, err := d.Retrieve(ctx, ref.Path())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var folders []string
	for i, f := range files {
		id, err := readIdentity(f)
		if err != nil {
			return nil, fmt.Errorf("%s, part %d: %w", ref.Path(), i+1, err)
		}
		if id.own() {
			continue
		}
		if !safeUID(id.SeriesInstanceUID) || !safeUID(id.SOPInstanceUID) {
			return nil, fmt.Errorf("%s, part %d: malformed UID", ref.Path(), i+1)
		}
		folder := filepath.Join(dir, id.SeriesInstanceUID)
		if !seen[folder] {
			if err := os.MkdirAll(folder, 0o755); err != nil {
				return nil, err
			}
			seen[folder] = true
			folders = append(folders, folder)
		}
		if err := os.WriteFile(filepath.Join(folder, id.SOPInstanceUID+".dcm"), f, 0o600); err != nil {
			return nil, err
		}
	}
	if len(folders) == 0 {
		return nil, fmt.Errorf("%s holds no instance to score", ref.Path())
	}
	return folders, nil
}

// safeUID: digits and dots only, so a UID can name a file.
func safeUID(uid string) bool {
	if uid == "" || len(uid) > 64 {
		return false
	}
	for _, c := range uid {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return uid[0] != '.'
}

// FetchInputs replaces the DICOMweb study and series URLs among a 'maddr
// score' command line's inputs by folders downloaded into dir; other
// inputs pass through unchanged.
func FetchInputs(ctx context.Context, inputs []string, o archive.Options, dir string) ([]string, error) {
	out := make([]string, 0, len(inputs))
	clients := map[string]*archive.DICOMweb{}
	for i, in := range inputs {
		if !IsDICOMwebURL(in) {
			out = append(out, in)
			continue
		}
		root, ref, err := archive.ParseURL(in)
		if err != nil {
			return nil, err
		}
		d := clients[root]
		if d == nil {
			if d, err = archive.NewDICOMweb(root, o); err != nil {
				return nil, err
			}
			clients[root] = d
		}
		folders, err := Download(ctx, d, ref, filepath.Join(dir, fmt.Sprintf("input%d", i+1)))
		if err != nil {
			return nil, err
		}
		out = append(out, folders...)
	}
	return out, nil
}
