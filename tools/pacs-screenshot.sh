#!/usr/bin/env bash
# Makes the screenshots of docs/pacs.md: starts Debian's Orthanc (no
# authentication, loopback only, temporary storage), uploads the real CT
# fixture and a phantom X-ray, trains a tiny model, runs `maddr watch --once`
# until both are scored, and photographs Orthanc's own web interface with
# headless Chromium: the study with its result series, the Secondary
# Capture's page, and the Secondary Capture as Orthanc's preview renders it.
#   usage: tools/pacs-screenshot.sh [OUTDIR]   (default docs/img)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/img}
work=$(mktemp -d)
orthanc_pid=
cleanup() {
	[ -n "$orthanc_pid" ] && kill "$orthanc_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/orthanc.json" <<JSON
{"Name": "maddr-docs", "StorageDirectory": "$work/db", "IndexDirectory": "$work/db",
 "HttpPort": $port, "DicomPort": $dport, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
 "UserMetadata": {"MaddrResult": 1024}, "StableAge": 2,
 "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}}
JSON
/usr/sbin/Orthanc "$work/orthanc.json" >"$work/orthanc.log" 2>&1 &
orthanc_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$base/system" >/dev/null && break; sleep 0.2; done

go build -o "$work/maddr" ./cmd/maddr
"$work/maddr" train --data phantom,scale=0.06,size=64 --model ae --size 32 --resize 0 --crop 0 \
	--iterations 80 --batch 8 --out "$work/run" >"$work/train.log" 2>&1
"$work/maddr" eval --model "$work/run" --data phantom,scale=0.06,size=64 --save-thresholds >"$work/eval.log" 2>&1

# The real CT fixture (its own study) is what the screenshots show.
curl -sf -X POST --data-binary @testdata/real/pydicom/CT_small.dcm "$base/instances" >"$work/ct.json"
study=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ParentStudy"])' "$work/ct.json")
for _ in $(seq 60); do
	"$work/maddr" watch --model "$work/run" --orthanc "$base" --state "$work/state.json" --once 2>>"$work/watch.log"
	grep -q '"msg":"scored"' "$work/watch.log" && break
	sleep 1
done
# The Secondary Capture: the only instance of the study's OT result series.
sc=$(curl -sf "$base/studies/$study/series" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    t = s["MainDicomTags"]
    if t.get("SeriesDescription", "").startswith("maddr anomaly result") and t.get("Modality") == "OT":
        print(s["Instances"][0])
        break
')
if [ -z "$sc" ]; then
	echo "no Secondary Capture in the study; watch log:" >&2
	cat "$work/watch.log" >&2
	exit 1
fi
shot() { # URL FILE WIDTHxHEIGHT
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
		--disable-component-update --disable-sync --user-data-dir="$work/chrome" --hide-scrollbars \
		--virtual-time-budget=5000 --screenshot="$2" --window-size="$3" "$1" >/dev/null 2>&1
}
mkdir -p "$out"
shot "$base/app/explorer.html#study?uuid=$study" "$out/pacs-orthanc-study.png" 1100,700
shot "$base/app/explorer.html#instance?uuid=$sc" "$out/pacs-orthanc-sc-tags.png" 1100,900
shot "$base/instances/$sc/preview" "$out/pacs-orthanc-sc-preview.png" 700,700
echo "wrote $out/pacs-orthanc-study.png $out/pacs-orthanc-sc-tags.png $out/pacs-orthanc-sc-preview.png"
grep '"msg":"scored"' "$work/watch.log"
