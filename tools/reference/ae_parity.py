#!/usr/bin/python3
"""Golden fixture for the plain autoencoder baseline (baselines/ae/parity_test.go).

Written from METHODS.md 3.1 (MedIAnomaly backbone), not from MedIAnomaly's code.
Parameter names equal the Go store's, so the Go test loads `init.<name>`
directly. The fixture uses a small configuration (32x32 input, so 3 down
blocks, base width 8, hidden 32, latent 16) to stay well under 1 MB; the
default 64x64 network's parameter count is stored in the metadata.

Records one training step on a fixed batch: z, x_hat, each loss term, every
parameter's gradient, then the per-image score in eval mode after the Adam
update. The step includes a stand-in MADDR hook, 0.1 * mean_i sum_{k<4} z_ik^2,
so the test also proves the hook's loss reaches the encoder.

A second file, ae_maddr_parity.safetensors, records one step of the AE wrapped
by MADDR (mixup, both focal heads on z[0:4] and z[4:8], the center loss on
z[8:16]; the MADDR pieces come from maddr_losses.py): every loss term, and the
gradient and the Adam update of every parameter, heads included, each of which
one Adam step moves once.

This module also holds the backbone that memae_parity.py and
ganomaly_parity.py import.

Run from the repository root:  /usr/bin/python3 tools/reference/ae_parity.py
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402

OUT = os.path.join("baselines", "ae", "testdata", "ae_parity.safetensors")
MADDR_OUT = os.path.join("baselines", "ae", "testdata", "ae_maddr_parity.safetensors")
# z[0:4] feeds the modality head, z[4:8] the organ head, z[8:16] the center loss.
MADDR_DIMS = (4, 4)

SMALL = dict(size=32, base=8, hidden=32, latent=16)
DEFAULT = dict(size=64, base=16, hidden=1024, latent=128)


def levels(size):
    n = 0
    while size > 4:
        size //= 2
        n += 1
    return n


def channels(size, base):
    return [base * 2 ** min(i, 2) for i in range(levels(size))]


class ConvBN(nn.Module):
    """Bias-free (transposed) 4x4 stride-2 convolution [-> BN] [-> activation]."""

    def __init__(self, cin, cout, transposed, bn, act):
        super().__init__()
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = cls(cin, cout, 4, 2, 1, bias=False)
        if bn:
            self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        h = self.conv(x)
        if hasattr(self, "bn"):
            h = self.bn(h)
        return self.act(h) if self.act is not None else h


class MLP(nn.Module):
    def __init__(self, cin, hidden, cout, bn):
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden)
        if bn:
            self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, cout)

    def forward(self, x):
        h = self.fc1(x)
        if hasattr(self, "bn"):
            h = self.bn(h)
        return self.fc2(torch.relu(h))


class Trunk(nn.Module):
    """Down path: image -> 4x4 map, flattened."""

    def __init__(self, size, base):
        super().__init__()
        cin = 1
        self.n = levels(size)
        for i, c in enumerate(channels(size, base)):
            setattr(self, "down%d" % i, ConvBN(cin, c, False, True, torch.relu))
            cin = c

    def forward(self, x):
        for i in range(self.n):
            x = getattr(self, "down%d" % i)(x)
        return x.flatten(1)


class LatentEncoder(Trunk):
    def __init__(self, size, base, hidden, latent, bn):
        super().__init__(size, base)
        flat = channels(size, base)[-1] * 16
        self.fc1 = nn.Linear(flat, hidden)
        if bn:
            self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, latent)

    def forward(self, x):
        h = self.fc1(super().forward(x))
        if hasattr(self, "bn"):
            h = self.bn(h)
        return self.fc2(torch.relu(h))


class LatentDecoder(nn.Module):
    def __init__(self, size, base, hidden, latent, bn):
        super().__init__()
        ch = channels(size, base)
        self.c0 = ch[-1]
        self.fc1 = nn.Linear(latent, hidden)
        if bn:
            self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, ch[-1] * 16)
        rev = ch[::-1] + [1]
        self.n = len(ch)
        for i in range(self.n):
            last = i == self.n - 1
            setattr(self, "up%d" % i, ConvBN(rev[i], rev[i + 1], True, not last, None if last else torch.relu))

    def forward(self, z):
        h = self.fc1(z)
        if hasattr(self, "bn"):
            h = self.bn(h)
        h = self.fc2(torch.relu(h)).view(-1, self.c0, 4, 4)
        for i in range(self.n):
            h = getattr(self, "up%d" % i)(h)
        return h


class AE(nn.Module):
    def __init__(self, size, base, hidden, latent):
        super().__init__()
        self.enc = LatentEncoder(size, base, hidden, latent, True)
        self.dec = LatentDecoder(size, base, hidden, latent, True)

    def forward(self, x):
        z = self.enc(x)
        return z, self.dec(z)


# Parameters checked after the Adam step (ones with well-conditioned gradients).
AFTER = ["enc.fc2.weight", "dec.up0.conv.weight", "enc.down0.bn.weight", "dec.bn.running_mean"]


def hook_loss(z):
    return 0.1 * (z[:, :4] ** 2).sum(1).mean()


def count(model):
    return sum(p.numel() for p in model.parameters())


def record_state(out, prefix, model):
    for k, v in model.state_dict().items():
        out[prefix + k] = to_numpy(v)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(11)
    net = AE(**SMALL)
    x = torch.rand(3, 1, SMALL["size"], SMALL["size"]) * 2 - 1
    out = {"input": to_numpy(x)}
    record_state(out, "init.", net)

    # Eval-mode scores first, while the running statistics are at their init:
    # after the Adam step the biases feeding BatchNorm (zero gradient, so
    # Adam moves them by +-lr on the sign of rounding noise) would make
    # eval outputs implementation-dependent.
    net.eval()
    with torch.no_grad():
        _, x_hat = net(x)
        out["score"] = to_numpy(((x - x_hat) ** 2).flatten(1).mean(1))
        out["score_l1"] = to_numpy((x - x_hat).abs().flatten(1).mean(1))
    net.train()

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt.zero_grad()
    z, x_hat = net(x)
    rec = ((x - x_hat) ** 2).mean()
    hook = hook_loss(z)
    total = rec + hook
    total.backward()
    out["z"] = to_numpy(z)
    out["x_hat"] = to_numpy(x_hat)
    out["loss.rec"] = to_numpy(rec.reshape(1))
    out["loss.hook"] = to_numpy(hook.reshape(1))
    out["loss.total"] = to_numpy(total.reshape(1))
    for k, p in net.named_parameters():
        out["grad." + k] = to_numpy(p.grad)
    opt.step()
    for k in AFTER:
        out["after." + k] = to_numpy(net.state_dict()[k])

    meta = {"generator": "tools/reference/ae_parity.py", "torch": torch.__version__,
            "default_num_params": count(AE(**DEFAULT))}
    save(OUT, out, meta)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")
    maddr_step()


def maddr_step():
    import maddr_losses as ml
    torch.manual_seed(21)
    net = AE(**SMALL)
    heads = ml.maddr_heads(*MADDR_DIMS)
    x = torch.rand(4, 1, SMALL["size"], SMALL["size"]) * 2 - 1
    out, meta = {"input": to_numpy(x)}, {"generator": "tools/reference/ae_parity.py", "torch": torch.__version__}
    record_state(out, "init.", net)
    ml.record_maddr_setup(out, meta, heads, *MADDR_DIMS)
    params = list(net.named_parameters()) + [("maddr." + k, p) for k, p in heads.named_parameters()]
    before = {k: p.detach().clone() for k, p in params}
    opt = torch.optim.Adam([p for _, p in params], lr=1e-3)
    opt.zero_grad()
    xm = ml.mixup(x)
    z, x_hat = net(xm)
    rec = ((xm - x_hat) ** 2).mean()
    terms = ml.constraint_terms(z, heads, *MADDR_DIMS)
    total = rec + sum(terms.values())
    total.backward()
    opt.step()
    for k, v in dict(terms, rec=rec, loss=total).items():
        out["loss." + k] = to_numpy(v.reshape(1))
    ml.record_update(out, params, before)
    save(MADDR_OUT, out, meta)
    print("wrote", MADDR_OUT, os.path.getsize(MADDR_OUT), "bytes")


if __name__ == "__main__":
    main()
