#!/usr/bin/env bash
# Runs every fuzz target of maddr for a while each (default 60 s), one after
# the other, and stops at the first failure. Not part of CI: 'make test' only
# replays the committed corpora (testdata/fuzz/*) as ordinary tests.
#
#   tools/fuzz.sh                 # every target, 60 s each
#   FUZZTIME=10m tools/fuzz.sh    # longer
#   tools/fuzz.sh FuzzDICOM       # only the named targets
#
# A failing input is saved by Go under the package's testdata/fuzz/<target>/;
# commit it together with the fix, and it stays a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-60s}
GO=${GO:-go}

# package target
targets=(
	"./medimg/dicom FuzzDICOM"
	"./medimg/nifti FuzzNIfTI"
	"./medimg/raster FuzzPNG"
	"./medimg/raster FuzzJPEG"
	"./medimg FuzzDecode"
	"./dataset FuzzManifest"
	"./safetensors FuzzSafetensors"
	"./pthfile FuzzRead"
)
# FuzzModelFile (./modelfile) is left out: under -fuzz it manages well under
# one input per second (each takes milliseconds as a plain test), so it only
# replays its committed corpus, in 'go test'. Name it to run it anyway.
if [[ " $* " == *" FuzzModelFile "* ]]; then
	targets+=("./modelfile FuzzModelFile")
fi

for entry in "${targets[@]}"; do
	read -r pkg target <<<"$entry"
	if [ $# -gt 0 ] && [[ " $* " != *" $target "* ]]; then
		continue
	fi
	echo "== $target ($pkg) for $FUZZTIME"
	"$GO" test "$pkg" -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$FUZZTIME"
done
