#!/usr/bin/python3
"""Golden fixture for the MemAE baseline (baselines/memae/parity_test.go).

Written from METHODS.md 3.1-3.2: the backbone of ae_parity.py with a memory
between the encoder and the decoder. Addressing: w = softmax(z M^T),
w' = relu(w - lam) * w / (|w - lam| + 1e-12), L1-renormalised, z_hat = w' M;
loss = MSE(x, x_hat) + ew * mean_i(-sum_k w'_ik log(w'_ik + 1e-12)).

Small configuration (32x32, base 8, hidden 32, latent 16, 10 slots,
lam 0.095 so that shrinkage really zeroes weights, entropy weight 0.05 so its
gradient is visible). Records z, addressing weights, z_hat, x_hat, each loss
term, every gradient of one step (with the stand-in MADDR hook of ae_parity.py)
and a few parameters after the Adam update; before the step, in eval mode, the
score and the cosine-addressing weights.

A second file, memae_maddr_parity.safetensors, records one step of MemAE wrapped
by MADDR (mixup, both focal heads and the center loss on the pre-memory z, as in
ae_parity.py): every loss term, and the gradient and the Adam update of every
parameter (encoder, memory, decoder, heads).

Run from the repository root:  /usr/bin/python3 tools/reference/memae_parity.py
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402
from ae_parity import LatentEncoder, LatentDecoder, hook_loss, count, record_state  # noqa: E402

OUT = os.path.join("baselines", "memae", "testdata", "memae_parity.safetensors")
MADDR_OUT = os.path.join("baselines", "memae", "testdata", "memae_maddr_parity.safetensors")
MADDR_DIMS = (4, 4)

SMALL = dict(size=32, base=8, hidden=32, latent=16, slots=10, lam=0.095)
DEFAULT = dict(size=64, base=16, hidden=1024, latent=128, slots=25, lam=0.0025)
ENTROPY_WEIGHT = 0.05


class Memory(nn.Module):
    def __init__(self, slots, width):
        super().__init__()
        b = 1 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(slots, width).uniform_(-b, b))


class MemAE(nn.Module):
    def __init__(self, size, base, hidden, latent, slots, lam):
        super().__init__()
        self.enc = LatentEncoder(size, base, hidden, latent, True)
        self.mem = Memory(slots, latent)
        self.dec = LatentDecoder(size, base, hidden, latent, True)
        self.lam = lam
        self.cosine = False

    def forward(self, x):
        z = self.enc(x)
        m = self.mem.weight
        if self.cosine:
            logits = F.normalize(z, dim=1) @ F.normalize(m, dim=1).t()
        else:
            logits = z @ m.t()
        w = torch.softmax(logits, dim=1)
        w = F.relu(w - self.lam) * w / ((w - self.lam).abs() + 1e-12)
        w = F.normalize(w, p=1, dim=1)
        z_hat = w @ m
        return z, w, z_hat, self.dec(z_hat)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(12)
    net = MemAE(**SMALL)
    x = torch.rand(3, 1, SMALL["size"], SMALL["size"]) * 2 - 1
    out = {"input": to_numpy(x)}
    record_state(out, "init.", net)

    # Eval mode at the initial weights (see ae_parity.py for why not after the step).
    net.eval()
    with torch.no_grad():
        _, _, _, x_hat = net(x)
        out["score"] = to_numpy(((x - x_hat) ** 2).flatten(1).mean(1))
        net.cosine = True
        out["cosine.att"] = to_numpy(net(x)[1])
        net.cosine = False
    net.train()

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt.zero_grad()
    z, w, z_hat, x_hat = net(x)
    rec = ((x - x_hat) ** 2).mean()
    ent = (-(w * torch.log(w + 1e-12)).sum(1)).mean()
    hook = hook_loss(z)
    total = rec + ENTROPY_WEIGHT * ent + hook
    total.backward()
    zeroed = int((w == 0).sum())
    assert 0 < zeroed < w.numel(), "shrinkage should zero some but not all weights"
    for k, v in dict(z=z, att=w, z_hat=z_hat, x_hat=x_hat).items():
        out[k] = to_numpy(v)
    for k, v in {"rec": rec, "entropy": ent, "hook": hook, "total": total}.items():
        out["loss." + k] = to_numpy(v.reshape(1))
    for k, p in net.named_parameters():
        out["grad." + k] = to_numpy(p.grad)
    opt.step()
    # (not mem.weight: slots no sample addresses get rounding-noise gradients,
    # which Adam turns into +-lr steps)
    for k in ["enc.fc2.weight", "dec.up1.conv.weight", "enc.bn.weight"]:
        out["after." + k] = to_numpy(net.state_dict()[k])

    meta = {"generator": "tools/reference/memae_parity.py", "torch": torch.__version__,
            "entropy_weight": ENTROPY_WEIGHT, "zeroed_weights": zeroed,
            "default_num_params": count(MemAE(**DEFAULT))}
    save(OUT, out, meta)
    print("wrote", OUT, os.path.getsize(OUT), "bytes;", zeroed, "of", w.numel(), "weights shrunk to 0")
    maddr_step()


def maddr_step():
    import maddr_losses as ml
    torch.manual_seed(22)
    net = MemAE(**SMALL)
    heads = ml.maddr_heads(*MADDR_DIMS)
    x = torch.rand(4, 1, SMALL["size"], SMALL["size"]) * 2 - 1
    out, meta = {"input": to_numpy(x)}, {"generator": "tools/reference/memae_parity.py", "torch": torch.__version__}
    record_state(out, "init.", net)
    ml.record_maddr_setup(out, meta, heads, *MADDR_DIMS)
    params = list(net.named_parameters()) + [("maddr." + k, p) for k, p in heads.named_parameters()]
    before = {k: p.detach().clone() for k, p in params}
    opt = torch.optim.Adam([p for _, p in params], lr=1e-3)
    opt.zero_grad()
    xm = ml.mixup(x)
    z, w, _, x_hat = net(xm)
    rec = ((xm - x_hat) ** 2).mean()
    ent = (-(w * torch.log(w + 1e-12)).sum(1)).mean()
    terms = ml.constraint_terms(z, heads, *MADDR_DIMS)
    total = rec + ENTROPY_WEIGHT * ent + sum(terms.values())
    total.backward()
    opt.step()
    for k, v in dict(terms, rec=rec, entropy=ent, loss=total).items():
        out["loss." + k] = to_numpy(v.reshape(1))
    ml.record_update(out, params, before)
    save(MADDR_OUT, out, meta)
    print("wrote", MADDR_OUT, os.path.getsize(MADDR_OUT), "bytes")


if __name__ == "__main__":
    main()
