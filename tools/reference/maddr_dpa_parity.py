#!/usr/bin/python3
"""Golden fixture for the full MADDR + DPA objective (baselines/dpa/maddr_parity_test.go).

One training step of DPA wrapped by MADDR, written from the paper and METHODS.md
sections 1.2-1.8: a mixed batch (fixed lambda and permutation), the DPA loss on
the mixed images, focal losses of the modality head on z[0:10] and the organ
head on z[10:20] (each lambda*FL(y) + (1-lambda)*FL(y[perm])), and the
leave-one-out center loss on z[20:128], all with weight 1. Records every loss
term, the gradient of the total loss with respect to every parameter (encoder,
decoder and both heads) and the parameters after one Adam step.

The DPA network, its fixed weights and the VGG come from dpa_parity.py; the
focal and center losses from maddr_losses.py (their literal forms).
Run from the repository root:  /usr/bin/python3 tools/reference/maddr_dpa_parity.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402
import dpa_parity as dpa  # noqa: E402
from maddr_losses import focal, center_eq4  # noqa: E402

OUT = "baselines/dpa/testdata/maddr_dpa_parity.safetensors"
LAM = 0.3
PERM = [2, 0, 3, 1]
ORGAN = [0, 1, 1, 0]      # liver, lung
MODALITY = [0, 0, 1, 1]   # ct, xray
ALPHA = [0.25, 0.75]


def main():
    torch.set_num_threads(1)
    stats = json.load(open(dpa.STATS_FILE))["layers"]
    rp = dpa.RelativePerceptualL1(dpa.FrozenVGG(dpa.VGG_FILE), stats)
    net = dpa.DPA(32, 128)
    dpa.fill_fixed(net)
    heads = nn.ModuleDict({"modality_head": nn.Linear(10, 2), "organ_head": nn.Linear(10, 2)})
    for name, p in heads.named_parameters():
        with torch.no_grad():
            p.copy_(torch.from_numpy(dpa.fixed_values("maddr." + name, p.numel(), 1 / math.sqrt(10))).reshape(p.shape))

    g = torch.Generator().manual_seed(77)
    x = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    perm = torch.tensor(PERM)
    xm = LAM * x + (1 - LAM) * x[perm]
    z = net.enc(xm)
    xr = net.dec(z)
    rp_img, _ = rp.per_image(xm, xr)
    l1 = (xm - xr).abs().mean()
    zf = z.reshape(4, -1)
    ym, yo = torch.tensor(MODALITY), torch.tensor(ORGAN)

    def mixed_focal(head, part, y):
        logits = head(part)
        return LAM * focal(logits, y, ALPHA, 2.0) + (1 - LAM) * focal(logits, y[perm], ALPHA, 2.0)

    fm = mixed_focal(heads["modality_head"], zf[:, 0:10], ym).float()
    fo = mixed_focal(heads["organ_head"], zf[:, 10:20], yo).float()
    c = center_eq4(zf[:, 20:]).float()
    total = rp_img.mean() + 0.1 * l1 + fo + fm + c

    params = [("", n, p) for n, p in net.named_parameters()] + [("maddr.", n, p) for n, p in heads.named_parameters()]
    opt = torch.optim.Adam([p for _, _, p in params], lr=1e-3)
    opt.zero_grad()
    total.backward()
    out = {"input": to_numpy(x)}
    for name, t in [("rp", rp_img.mean()), ("l1", l1), ("focal_modality", fm), ("focal_organ", fo), ("center", c), ("total", total)]:
        out["loss." + name] = to_numpy(t.reshape(1))
    for prefix, n, p in params:
        dpa.store_tensor(out, "grad", prefix + n, p.grad)
    opt.step()
    for prefix, n, p in params:
        dpa.store_tensor(out, "adam1", prefix + n, p.detach())
    save(OUT, out, {"generator": "tools/reference/maddr_dpa_parity.py", "torch": torch.__version__})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
