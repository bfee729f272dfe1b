#!/usr/bin/python3
"""Write golden Pillow BILINEAR resize outputs for float ("F" mode) images.

Run from the repository root:  /usr/bin/python3 tools/reference/pil_resize.py
Writes preprocess/testdata/pil_resize.json, read by preprocess/resample_test.go.

Inputs are an integer pattern (see pattern() below, mirrored in the Go test) so the file stays small and the Go
side rebuilds exactly the same float32 inputs.
"""
import json
import os

import PIL
from PIL import Image

# name, input width, height, output width, height, pattern parameters (a, b, c, m)
CASES = [
    ("shrink-7x1-to-2x1", 7, 1, 2, 1, (3, 5, 1, 11)),
    ("grow-4x4-to-8x8", 4, 4, 8, 8, (7, 13, 3, 17)),
    ("odd-37x23-to-11x9", 37, 23, 11, 9, (37, 101, 7, 251)),
    ("paper-224-to-64", 224, 224, 64, 64, (37, 101, 7, 251)),
    ("nonsquare-120x80-to-96", 120, 80, 96, 96, (11, 29, 5, 97)),
    ("vertical-only-13x17-to-13x5", 13, 17, 13, 5, (5, 3, 2, 23)),
]


def pattern(w, h, a, b, c, m):
    # Integer arithmetic, then one division: bit-identical in Go.
    return [((x * a + y * b + x * y * c) % m) / m for y in range(h) for x in range(w)]


def main():
    out = {"pillow_version": PIL.__version__, "cases": []}
    for name, w, h, ow, oh, (a, b, c, m) in CASES:
        img = Image.new("F", (w, h))
        img.putdata(pattern(w, h, a, b, c, m))
        res = img.resize((ow, oh), resample=Image.BILINEAR)
        out["cases"].append({
            "name": name, "width": w, "height": h, "out_width": ow, "out_height": oh,
            "pattern": [a, b, c, m],
            # 9 significant digits round-trip a float32 exactly.
            "output": [float("%.9g" % v) for v in res.getdata()],
        })
    path = os.path.join("preprocess", "testdata", "pil_resize.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
