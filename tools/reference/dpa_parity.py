#!/usr/bin/python3
"""Golden fixtures for maddr's DPA baseline and relative perceptual loss.

Written from METHODS.md sections 2.2-2.4 (not from the Go code):
  * the "residual18" encoder/decoder of DPA at 32x32 with MADDR's widths
    (32->32, 16->32, 8->32, 4->64, latent 128), LeakyReLU 0.2, no norm;
  * the relative perceptual L1 loss on a VGG19 to r42, normalised with DPA's
    ImageNet feature statistics (perceptual/data/*.json);
  * the VGG is the small-width fake (perceptual/testdata/vgg19_div16.pth, made by
    dpa_fake_vgg.py), so the statistics are sliced to its first C channels.
Weights are not stored: both sides fill each parameter from a counter-based
generator (splitmix64 seeded by the FNV-1a hash of the parameter name), so the
fixtures stay small. Gradients of large tensors are stored as a strided subsample
plus their L2 norm.

Writes perceptual/testdata/rp_parity.safetensors and
baselines/dpa/testdata/dpa_parity.safetensors.
Run from the repository root:  /usr/bin/python3 tools/reference/dpa_parity.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402

VGG_FILE = "perceptual/testdata/vgg19_div16.pth"
STATS_FILE = "perceptual/data/vgg19_r32_r42_mean_divisor.json"
RP_OUT = "perceptual/testdata/rp_parity.safetensors"
DPA_OUT = "baselines/dpa/testdata/dpa_parity.safetensors"
FULL_LIMIT = 4096   # tensors up to this many elements are stored whole
SUBSAMPLE = 2048    # larger ones as about this many evenly strided elements

M64 = (1 << 64) - 1


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def fixed_values(name, n, bound):
    """Uniform(-bound, bound) values, reproducible in Go bit for bit."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(name)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    return ((2.0 * u - 1.0) * bound).astype(np.float32)


def fill_fixed(module):
    for name, p in module.named_parameters():
        shape = tuple(p.shape)
        if len(shape) == 4:  # conv weight: Kaiming(fan_out, leaky 0.2) spread, as uniform
            bound = math.sqrt(6.0 / 1.04 / (shape[0] * shape[2] * shape[3]))
        else:                # bias: PyTorch's default range for its conv
            w = dict(module.named_parameters())[name[: -len("bias")] + "weight"]
            bound = 1.0 / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
        with torch.no_grad():
            p.copy_(torch.from_numpy(fixed_values(name, p.numel(), bound)).reshape(shape))


# ---------------------------------------------------------------- VGG and RP
class FrozenVGG:
    """VGG19 conv1_1..conv4_2 from a torchvision-style state_dict."""
    INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21]

    def __init__(self, path):
        sd = torch.load(path)
        self.w = [sd["features.%d.weight" % i] for i in self.INDEX]
        self.b = [sd["features.%d.bias" % i] for i in self.INDEX]
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(self, img):
        h = (img * 0.5 + 0.5).repeat(1, 3, 1, 1)
        h = (h - self.mean) / self.std
        out = {}
        names = ["c11", "c12", "c21", "c22", "c31", "c32", "c33", "c34", "c41", "c42"]
        for name, w, b in zip(names, self.w, self.b):
            h = F.relu(F.conv2d(h, w, b, padding=1))
            if name == "c32":
                out["r32"] = h
            if name == "c42":
                out["r42"] = h
                break
            if name in ("c12", "c22", "c34"):
                h = F.max_pool2d(h, 2)
        return out


class RelativePerceptualL1:
    def __init__(self, vgg, stats):
        self.vgg = vgg
        self.stats = {}
        for layer in ("r32", "r42"):
            c = vgg.w[5 if layer == "r32" else 9].shape[0]
            m = torch.tensor(stats[layer]["mean"][:c]).view(1, c, 1, 1)
            d = torch.tensor(stats[layer]["divisor"][:c]).view(1, c, 1, 1)
            self.stats[layer] = (m, d)

    def per_image(self, target, recon):
        with torch.no_grad():
            ft = self.vgg.features(target)
        fr = self.vgg.features(recon)
        total = 0
        for layer in ("r32", "r42"):
            m, d = self.stats[layer]
            nt = (ft[layer] - m) / d
            nr = (fr[layer] - m) / d
            total = total + (nr - nt).abs().mean(dim=(1, 2, 3)) / nt.abs().mean(dim=(1, 2, 3)).detach()
        return total / 2, ft


# ---------------------------------------------------------------- DPA network
def width(res):
    return {4: 64, 8: 32, 16: 32, 32: 32}.get(res, 16)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, kind):
        super().__init__()
        self.kind = kind
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def resample(self, t):
        if self.kind == "down":
            return F.avg_pool2d(t, 2)
        if self.kind == "up":
            return F.interpolate(t, scale_factor=2, mode="nearest")
        return t

    def forward(self, x):
        h = self.resample(F.leaky_relu(x, 0.2))
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        s = self.resample(x)
        if self.skip is not None:
            s = self.skip(s)
        return s + h


class Stage(nn.Module):
    def __init__(self, cin, cout, kind):
        super().__init__()
        setattr(self, kind, ResBlock(cin, cout, kind))
        self.pre = ResBlock(cout, cout, "pre")
        self.first = kind

    def forward(self, x):
        return self.pre(getattr(self, self.first)(x))


class Named(nn.Module):
    pass


class Encoder(nn.Module):
    def __init__(self, size, latent):
        super().__init__()
        w = width(size)
        self.from_image = Named()
        self.from_image.conv = nn.Conv2d(1, w, 3, padding=1)
        self.from_image.pre1 = ResBlock(w, w, "pre")
        self.from_image.pre2 = ResBlock(w, w, "pre")
        self.res = []
        r = size
        while r > 4:
            setattr(self, "res_%d" % r, Stage(width(r), width(r // 2), "down"))
            self.res.append("res_%d" % r)
            r //= 2
        self.res_4 = Named()
        self.res_4.conv = nn.Conv2d(width(4), latent, 4)

    def forward(self, x):
        h = self.from_image.pre2(self.from_image.pre1(self.from_image.conv(x)))
        for name in self.res:
            h = getattr(self, name)(h)
        return self.res_4.conv(F.leaky_relu(h, 0.2)).flatten(1)


class Decoder(nn.Module):
    def __init__(self, size, latent):
        super().__init__()
        self.res_4 = Named()
        self.res_4.conv = nn.Conv2d(latent, width(4), 4, padding=3)
        self.res = []
        r = 8
        while r <= size:
            setattr(self, "res_%d" % r, Stage(width(r // 2), width(r), "up"))
            self.res.append("res_%d" % r)
            r *= 2
        self.to_image = Named()
        self.to_image.conv = nn.Conv2d(width(size), 1, 3, padding=1)

    def forward(self, z):
        h = self.res_4.conv(F.leaky_relu(z.view(z.shape[0], -1, 1, 1), 0.2))
        for name in self.res:
            h = getattr(self, name)(h)
        return self.to_image.conv(F.leaky_relu(h, 0.2))


class DPA(nn.Module):
    def __init__(self, size, latent):
        super().__init__()
        self.enc = Encoder(size, latent)
        self.dec = Decoder(size, latent)


def store_tensor(out, prefix, name, t):
    flat = to_numpy(t).reshape(-1)
    if flat.size <= FULL_LIMIT:
        out[prefix + "." + name] = to_numpy(t)
        return
    stride = -(-flat.size // SUBSAMPLE)
    out[prefix + "_sub." + name] = flat[::stride].copy()
    out[prefix + "_norm." + name] = np.array([np.linalg.norm(flat.astype(np.float64))], dtype=np.float32)


def main():
    torch.set_num_threads(1)
    stats = json.load(open(STATS_FILE))["layers"]
    vgg = FrozenVGG(VGG_FILE)
    rp = RelativePerceptualL1(vgg, stats)
    g = torch.Generator().manual_seed(2023)

    # RP on a fixed pair (perceptual package).
    target = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    recon = (target + 0.3 * torch.randn(2, 1, 32, 32, generator=g)).requires_grad_(True)
    loss, ft = rp.per_image(target, recon)
    loss.sum().backward()
    save(RP_OUT, {
        "target": to_numpy(target), "recon": to_numpy(recon),
        "r32_target": to_numpy(ft["r32"]), "r42_target": to_numpy(ft["r42"]),
        "rp": to_numpy(loss), "grad_recon": to_numpy(recon.grad),
    }, {"generator": "tools/reference/dpa_parity.py", "torch": torch.__version__, "vgg": VGG_FILE})
    print("wrote", RP_OUT)

    # DPA at 32x32, batch 2, latent 128, one Adam step with a latent hook.
    net = DPA(32, 128)
    fill_fixed(net)
    x = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    out = {"input": to_numpy(x)}
    z = net.enc(x)
    xr = net.dec(z)
    rp_img, _ = rp.per_image(x, xr)
    l1_img = (x - xr).abs().mean(dim=(1, 2, 3))
    hook = 0.01 * z.pow(2).mean()
    total = rp_img.mean() + 0.1 * l1_img.mean() + hook
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    opt.zero_grad()
    total.backward()
    out["z"] = to_numpy(z)
    out["recon"] = to_numpy(xr)
    out["rp"] = to_numpy(rp_img)
    out["l1"] = to_numpy(l1_img)
    out["hook"] = to_numpy(hook.reshape(1))
    out["total"] = to_numpy(total.reshape(1))
    n_tensors = 0
    for name, p in net.named_parameters():
        store_tensor(out, "grad", name, p.grad)
        n_tensors += 1
    opt.step()
    for name, p in net.named_parameters():
        store_tensor(out, "adam1", name, p.detach())
    out["num_tensors"] = np.array([n_tensors], dtype=np.int64)
    out["num_params"] = np.array([sum(p.numel() for p in net.parameters())], dtype=np.int64)
    save(DPA_OUT, out, {"generator": "tools/reference/dpa_parity.py", "torch": torch.__version__, "vgg": VGG_FILE})
    print("wrote", DPA_OUT, "(%d tensors, %d parameters)" % (n_tensors, out["num_params"][0]))


if __name__ == "__main__":
    main()
