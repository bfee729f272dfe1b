"""Minimal safetensors writer/reader for the reference generators (Debian has
no python3-safetensors). Layout: u64 little-endian header length, JSON header,
raw little-endian data."""
import json
import struct

import numpy as np

_DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float64"): "F64"}


def save(path, tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.array(tensors[name], copy=True, order="C")  # keeps 0-d shapes
        if arr.dtype not in _DTYPES:
            arr = arr.astype(np.float32)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def to_numpy(t):
    # copy: a numpy view would follow later in-place updates of the tensor
    return t.detach().cpu().numpy().copy()
