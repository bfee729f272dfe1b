#!/usr/bin/env bash
# fetch-fixtures.sh puts real medical images used by the reader tests into testdata/real/ at the repository
# root. They come from Debian packages (apt-get download + dpkg -x, nothing is installed) and from the test
# data of the pinned Go DICOM module. The folder is git-ignored: medical images are never committed.
#
# Idempotent: a source whose folder is already complete is skipped; rerun with FORCE=1 to fetch again.
#
# Layout:
#   testdata/real/pydicom/   pydicom's data/test_files (CT_small.dcm, MR_small*.dcm, ...)
#   testdata/real/mricron/   MRIcron templates (ch2.nii.gz, inia19-t1-brain.nii.gz, ...)
#   testdata/real/nibabel/   nibabel's tests/data (anatomical.nii, functional.nii, example_nifti2.nii.gz, ...)
#   testdata/real/godicom/   github.com/suyashkumar/dicom v1.1.0 testdata (4.dcm, ...)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/testdata/real"
mkdir -p "$dest"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# done_already DIR FILE... succeeds when every FILE exists in DIR and FORCE is not set.
done_already() {
	local dir="$1"
	shift
	[[ "${FORCE:-}" == 1 ]] && return 1
	local f
	for f in "$@"; do
		[[ -s "$dir/$f" ]] || return 1
	done
	return 0
}

apt_updated=0
# extract_deb PKG: downloads the .deb of PKG into $work and unpacks it into $work/PKG.
extract_deb() {
	local pkg="$1"
	if ! apt-cache show "$pkg" >/dev/null 2>&1 && [[ $apt_updated == 0 ]]; then
		apt-get update -qq
		apt_updated=1
	fi
	if ! (cd "$work" && apt-get download -qq "$pkg" 2>/dev/null); then
		if [[ $apt_updated == 0 ]]; then
			apt-get update -qq
			apt_updated=1
		fi
		(cd "$work" && apt-get download -qq "$pkg")
	fi
	mkdir -p "$work/$pkg"
	dpkg -x "$work/${pkg}"_*.deb "$work/$pkg"
}

# copy_tree SRC DST: replaces DST by the contents of SRC.
copy_tree() {
	local src="$1" dst="$2"
	if [[ ! -d "$src" ]]; then
		echo "fetch-fixtures: expected folder $src not found in the package" >&2
		exit 1
	fi
	rm -rf "$dst"
	mkdir -p "$dst"
	cp -a "$src/." "$dst/"
	chmod -R u+w "$dst"
}

if done_already "$dest/pydicom" CT_small.dcm MR_small.dcm MR_small_bigendian.dcm MR_small_implicit.dcm \
	MR_small_expb.dcm MR_small_jp2klossless.dcm MR_small_jpeg_ls_lossless.dcm; then
	echo "pydicom fixtures present"
else
	extract_deb python3-pydicom
	src="$(find "$work/python3-pydicom" -type d -path '*pydicom/data/test_files' | head -n1)"
	copy_tree "$src" "$dest/pydicom"
	echo "pydicom fixtures -> $dest/pydicom"
fi

if done_already "$dest/mricron" ch2.nii.gz inia19-t1-brain.nii.gz; then
	echo "mricron fixtures present"
else
	extract_deb mricron-data
	copy_tree "$work/mricron-data/usr/share/mricron/templates" "$dest/mricron"
	echo "mricron fixtures -> $dest/mricron"
fi

if done_already "$dest/nibabel" anatomical.nii functional.nii example_nifti2.nii.gz; then
	echo "nibabel fixtures present"
else
	extract_deb python3-nibabel
	src="$(find "$work/python3-nibabel" -type d -path '*nibabel/tests/data' | head -n1)"
	copy_tree "$src" "$dest/nibabel"
	echo "nibabel fixtures -> $dest/nibabel"
fi

if done_already "$dest/godicom" 4.dcm; then
	echo "go dicom fixtures present"
else
	moddir="$(cd "$root" && go mod download -json github.com/suyashkumar/dicom@v1.1.0 |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [[ -z "$moddir" || ! -d "$moddir/testdata" ]]; then
		echo "fetch-fixtures: could not locate github.com/suyashkumar/dicom@v1.1.0 in the module cache" >&2
		exit 1
	fi
	copy_tree "$moddir/testdata" "$dest/godicom"
	echo "go dicom fixtures -> $dest/godicom"
fi

# A manifest over a few of the real images, so `maddr data inspect manifest:testdata/real/manifest.csv`
# (and the tests) exercise the real readers through the normal data path. Groups are what the images are;
# labels follow what is known of them (4.dcm is a COVID-19 positive chest X-ray).
cat >"$dest/manifest.csv" <<'CSV'
path,organ,modality,split,label
pydicom/CT_small.dcm,lung,ct,test,normal
godicom/4.dcm,lung,xray,test,abnormal
mricron/ch2.nii.gz,brain,mri,test,normal
nibabel/anatomical.nii,brain,mri,test,normal
CSV
echo "manifest -> $dest/manifest.csv"
