#!/usr/bin/python3
"""PyTorch side of `maddr bench`: one case per process, one JSON line on stdout.

The networks are the independent PyTorch implementations written for the parity
fixtures, imported, not copied: DPA and the relative perceptual loss from
dpa_parity.py (here with a full-width VGG19 to r42 with random weights, as the Go
side runs with --vgg-random-init), the MADDR losses from maddr_losses.py, the
MADDR step as in maddr_dpa_parity.py, and GANomaly (the original DCGAN variant at
64x64, ngf = ndf = 64, nz 100) from ganomaly_parity.py. Same optimiser (Adam),
same batch, same thread count as the Go side; images are uniform in [-1, 1],
drawn from a pool in shuffled epochs, as the Go side draws them.

Usage (from anywhere; the script finds the repository root):
  /usr/bin/python3 tools/reference/bench_torch.py --case dpa-train --batch 32 --size 64 --steps 10 --warmup 2
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ae_parity as ae  # noqa: E402
import dpa_parity as dpa  # noqa: E402
import fanogan_parity as fag  # noqa: E402
import ganomaly_parity as gan  # noqa: E402
import memae_parity as mem  # noqa: E402
from maddr_losses import focal, center_eq4  # noqa: E402

ALPHA = [0.25, 0.75]
GROUP_ORGAN = [0, 1, 1]     # liver CT, lung CT, lung X-ray
GROUP_MODALITY = [0, 0, 1]


# What an expert PyTorch user does for speed, each part switchable (--plain
# turns them all off) so that its gain can be measured:
#   channels-last: VGG weights and input in NHWC (oneDNN convolves without reordering);
#   inference-mode: the target side of the perceptual loss (VGG forward, its
#     normalisation and scale) under torch.inference_mode instead of no_grad;
#   set-to-none: optimizer.zero_grad(set_to_none=True) (frees gradients instead of zeroing them).
SPEEDUPS = ("channels-last", "inference-mode", "set-to-none")
ON = set(SPEEDUPS)


class RandomVGG(dpa.FrozenVGG):
    """dpa_parity's VGG19 to r42 at full width, PyTorch-default random weights."""

    def __init__(self):
        widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512]
        self.w, self.b, cin = [], [], 3
        for w in widths:
            conv = nn.Conv2d(cin, w, 3, padding=1)
            weight = conv.weight.detach()
            if "channels-last" in ON:
                weight = weight.contiguous(memory_format=torch.channels_last)
            self.w.append(weight)
            self.b.append(conv.bias.detach())
            cin = w
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(self, img):
        if "channels-last" in ON:
            # dpa_parity's first op (repeat to three channels) keeps the layout of its input.
            img = img.contiguous(memory_format=torch.channels_last)
        return super().features(img)


class FastRelativePerceptualL1(dpa.RelativePerceptualL1):
    """dpa_parity's loss, the same arithmetic, with the whole target side
    (features, normalisation, scale) computed once without autograd."""

    def per_image(self, target, recon):
        with no_autograd():
            ft = self.vgg.features(target)
            norm_t, scale = {}, {}
            for layer in ("r32", "r42"):
                m, d = self.stats[layer]
                norm_t[layer] = (ft[layer] - m) / d
                scale[layer] = norm_t[layer].abs().mean(dim=(1, 2, 3))
        fr = self.vgg.features(recon)
        total = 0
        for layer in ("r32", "r42"):
            m, d = self.stats[layer]
            nr = (fr[layer] - m) / d
            # The divisor is saved for backward, which an inference tensor
            # cannot be: a copy of its B values is.
            total = total + (nr - norm_t[layer]).abs().mean(dim=(1, 2, 3)) / scale[layer].clone()
        return total / 2, ft


class Pool:
    def __init__(self, n, size, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.data = torch.rand(n, 1, size, size, generator=self.g) * 2 - 1
        self.order, self.pos = None, 0

    def next(self, b):
        if self.order is None or self.pos + b > len(self.order):
            self.order, self.pos = torch.randperm(len(self.data), generator=self.g), 0
        idx = self.order[self.pos:self.pos + b]
        self.pos += b
        return self.data[idx], idx


def rp_loss():
    stats = json.load(open(dpa.STATS_FILE))["layers"]
    return FastRelativePerceptualL1(RandomVGG(), stats)


def no_autograd():
    return torch.inference_mode() if "inference-mode" in ON else torch.no_grad()


def zero_grad(opt):
    opt.zero_grad(set_to_none="set-to-none" in ON)


def dpa_train(a):
    rp, net = rp_loss(), dpa.DPA(a.size, 128)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.StepLR(opt, 10000, 0.8)

    def step(x, idx):
        z = net.enc(x)
        xr = net.dec(z)
        rp_img, _ = rp.per_image(x, xr)
        rpm, l1 = rp_img.mean(), (xr - x).abs().mean()
        total = rpm + 0.1 * l1
        [t.item() for t in (rpm, l1, total)]  # the Go side reads its losses to log them
        zero_grad(opt)
        total.backward()
        opt.step()
        sched.step()
    return step


def maddr_terms(z, idx, lam, perm, heads):
    """MADDR's terms on a mixed batch's latent z, as the Go framework adds them to
    every baseline: focal losses of both heads (mixed labels) on z[0:10] and
    z[10:20], eq. 4's center loss on the rest. Returns (modality, organ, center)."""
    n = z.shape[0]
    zf = z.reshape(n, -1)
    ym = torch.tensor([GROUP_MODALITY[i % 3] for i in idx.tolist()])
    yo = torch.tensor([GROUP_ORGAN[i % 3] for i in idx.tolist()])

    def mixed_focal(head, part, y):
        logits = head(part)
        return lam * focal(logits, y, ALPHA, 2.0) + (1 - lam) * focal(logits, y[perm], ALPHA, 2.0)
    fm = mixed_focal(heads["modality_head"], zf[:, 0:10], ym).float()
    fo = mixed_focal(heads["organ_head"], zf[:, 10:20], yo).float()
    return fm, fo, center_eq4(zf[:, 20:]).float()


def maddr_train(net, extra_params, a):
    """Wraps a baseline's training loss in MADDR with mixup on every step (as the
    Go side's maddr-* cases): net_loss(net, xm) returns (total, z, terms to read)."""
    heads = nn.ModuleDict({"modality_head": nn.Linear(10, 2), "organ_head": nn.Linear(10, 2)})
    opt = torch.optim.Adam(list(extra_params) + list(heads.parameters()), lr=1e-3)
    beta = torch.distributions.Beta(1.0, 1.0)

    def step(x, idx):
        lam = float(beta.sample())
        perm = torch.randperm(x.shape[0])
        xm = lam * x + (1 - lam) * x[perm]
        base_total, z, read = net(xm)
        fm, fo, c = maddr_terms(z, idx, lam, perm, heads)
        total = base_total + fo + fm + c
        [t.item() for t in read + [fm, fo, c, total]]
        zero_grad(opt)
        total.backward()
        opt.step()
    return step


def maddr_dpa_train(a):
    """maddr_dpa_parity.py's step with a drawn lambda and permutation (mixup on every step)."""
    rp, net = rp_loss(), dpa.DPA(a.size, 128)

    def loss(xm):
        z = net.enc(xm)
        xr = net.dec(z)
        rp_img, _ = rp.per_image(xm, xr)
        rpm, l1 = rp_img.mean(), (xm - xr).abs().mean()
        return rpm + 0.1 * l1, z, [rpm, l1]
    return maddr_train(loss, net.parameters(), a)


def maddr_ae_train(a):
    """MADDR+AE: ae_train's network and loss on the mixed batch, plus MADDR's terms on z."""
    net = ae.AE(a.size, 16, 1024, 128)
    net.train()

    def loss(xm):
        z, x_hat = net(xm)
        rec = ((xm - x_hat) ** 2).mean()
        return rec, z, [rec]
    return maddr_train(loss, net.parameters(), a)


def maddr_memae_train(a):
    """MADDR+MemAE: memae_train's network and loss on the mixed batch, plus MADDR's terms on z."""
    net = mem.MemAE(a.size, 16, 1024, 128, 25, 0.0025)
    net.train()

    def loss(xm):
        z, w, _, x_hat = net(xm)
        rec = ((xm - x_hat) ** 2).mean()
        ent = (-(w * torch.log(w + 1e-12)).sum(1)).mean()
        return rec + MEMAE_ENTROPY_WEIGHT * ent, z, [rec, ent]
    return maddr_train(loss, net.parameters(), a)


def ganomaly_train(a):
    net = gan.original(a.size, 64, 100)
    net.train()
    opt_g = torch.optim.Adam(net.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.functional.binary_cross_entropy

    def step(x, idx):
        # ganomaly_parity.one_iteration without its recording
        zero_grad(opt_g)
        z, x_hat, z_hat = net.g(x)
        pred_real, feat_real = net.d(x)
        _, feat_fake = net.d(x_hat)
        adv = ((feat_real.detach() - feat_fake) ** 2).mean()
        rec = (x_hat - x).abs().mean()
        enc = ((z - z_hat) ** 2).mean()
        g_loss = adv + 50 * rec + enc
        g_loss.backward()
        opt_g.step()
        zero_grad(opt_d)
        pred_fake, _ = net.d(x_hat.detach())
        d_real = bce(pred_real, torch.ones_like(pred_real))
        d_fake = bce(pred_fake, torch.zeros_like(pred_fake))
        d_loss = 0.5 * (d_real + d_fake)
        d_loss.backward()
        opt_d.step()
        [t.item() for t in (adv, rec, enc, g_loss, d_real, d_fake, d_loss)]
    return step


def dpa_score(a):
    rp, net = rp_loss(), dpa.DPA(a.size, 128)

    def step(x, idx):
        with no_autograd():
            xr = net.dec(net.enc(x))
            rp_img, _ = rp.per_image(x, xr)
            (rp_img + 0.1 * (x - xr).abs().mean(dim=(1, 2, 3))).tolist()
    return step


def ganomaly_score(a):
    net = gan.original(a.size, 64, 100)
    net.eval()

    def step(x, idx):
        with no_autograd():
            z, _, z_hat = net.g(x)
            ((z - z_hat) ** 2).mean(1).tolist()
    return step


def ae_train(a):
    """MedIAnomaly's AE at its defaults (as the Go side's): MSE, Adam 1e-3."""
    net = ae.AE(a.size, 16, 1024, 128)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x, idx):
        _, x_hat = net(x)
        rec = ((x - x_hat) ** 2).mean()
        rec.item()
        zero_grad(opt)
        rec.backward()
        opt.step()
    return step


def ae_score(a):
    net = ae.AE(a.size, 16, 1024, 128)
    net.eval()

    def step(x, idx):
        with no_autograd():
            _, x_hat = net(x)
            ((x - x_hat) ** 2).flatten(1).mean(1).tolist()
    return step


MEMAE_ENTROPY_WEIGHT = 0.0002  # the Go side's default


def memae_train(a):
    net = mem.MemAE(a.size, 16, 1024, 128, 25, 0.0025)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x, idx):
        _, w, _, x_hat = net(x)
        rec = ((x - x_hat) ** 2).mean()
        ent = (-(w * torch.log(w + 1e-12)).sum(1)).mean()
        total = rec + MEMAE_ENTROPY_WEIGHT * ent
        [t.item() for t in (rec, ent, total)]
        zero_grad(opt)
        total.backward()
        opt.step()
    return step


def memae_score(a):
    net = mem.MemAE(a.size, 16, 1024, 128, 25, 0.0025)
    net.eval()

    def step(x, idx):
        with no_autograd():
            x_hat = net(x)[3]
            ((x - x_hat) ** 2).flatten(1).mean(1).tolist()
    return step


def fanogan_nets(a):
    """fanogan_parity's networks at the paper's width 64 and latent 128 (the Go defaults)."""
    fag.SIZE, fag.WIDTH, fag.LATENT = a.size, 64, 128
    return fag.Generator(), fag.Critic(), fag.Encoder()


def fanogan_train(a):
    """Stage 1 (WGAN-GP): a critic step every call, a generator step every 5th, as the Go side."""
    gen_net, critic, _ = fanogan_nets(a)
    gen_net.train()
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=1e-4, betas=(0.0, 0.9))
    calls = [0]

    def step(x, idx):
        b = x.shape[0]
        with torch.no_grad():
            fake = gen_net(torch.randn(b, fag.LATENT))
        d_real, _ = critic(x)
        d_fake, _ = critic(fake)
        eps = torch.rand(b, 1, 1, 1)
        x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
        d_hat, _ = critic(x_hat)
        grad, = torch.autograd.grad(d_hat, x_hat, grad_outputs=torch.ones_like(d_hat), create_graph=True)
        gp = ((grad.reshape(b, -1).norm(2, dim=1) - 1) ** 2).mean()
        d_loss = d_fake.mean() - d_real.mean() + fag.GP_WEIGHT * gp
        zero_grad(opt_d)
        d_loss.backward()
        opt_d.step()
        d_loss.item()
        calls[0] += 1
        if calls[0] % 5 == 0:
            zero_grad(opt_g)
            g_loss = -critic(gen_net(torch.randn(b, fag.LATENT)))[0].mean()
            g_loss.backward()
            opt_g.step()
            g_loss.item()
    return step


def fanogan_score(a):
    gen_net, critic, encoder = fanogan_nets(a)
    gen_net.eval()
    encoder.eval()

    def step(x, idx):
        with no_autograd():
            rec = gen_net(encoder(x))
            _, fx = critic(x)
            _, fr = critic(rec)
            (((x - rec) ** 2).flatten(1).mean(1) + fag.KAPPA * ((fx - fr) ** 2).mean(1)).tolist()
    return step


# dpa-score-bf16 compares the Go side's opt-in bf16 scoring with PyTorch's fp32.
# The Go side's dpa-train reuses target features across epochs; PyTorch's
# reference computes them every step in both cases.
CASES = {"dpa-train": dpa_train, "dpa-train-nocache": dpa_train, "maddr-dpa-train": maddr_dpa_train, "ganomaly-train": ganomaly_train,
         "dpa-score": dpa_score, "dpa-score-bf16": dpa_score, "ganomaly-score": ganomaly_score,
         "ae-train": ae_train, "ae-score": ae_score, "memae-train": memae_train, "memae-score": memae_score,
         "maddr-ae-train": maddr_ae_train, "maddr-memae-train": maddr_memae_train,
         "fanogan-train": fanogan_train, "fanogan-score": fanogan_score}


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--pool", type=int, default=648)
    ap.add_argument("--plain", action="store_true", help="none of the speed-ups (the reference as first written)")
    ap.add_argument("--without", default="", help="comma-separated speed-ups to leave out: " + ", ".join(SPEEDUPS))
    a = ap.parse_args()
    ON.clear()
    if not a.plain:
        off = set(filter(None, a.without.split(",")))
        unknown = off - set(SPEEDUPS)
        if unknown:
            ap.error("unknown speed-up(s) %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(SPEEDUPS)))
        ON.update(set(SPEEDUPS) - off)
    os.chdir(os.path.dirname(os.path.dirname(HERE)))  # dpa_parity's paths are relative to the repository
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(1)
    step = CASES[a.case](a)
    pool = Pool(max(a.pool, a.batch), a.size, 1 if a.case.endswith("-train") else 2)
    walls, cpus = [], []
    for i in range(a.warmup + a.steps):
        x, idx = pool.next(a.batch)
        c0, t0 = time.process_time(), time.perf_counter()
        step(x, idx)
        if i >= a.warmup:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    wall = statistics.median(walls)
    print(json.dumps({
        "impl": "pytorch", "case": a.case, "batch": a.batch, "size": a.size, "steps": a.steps, "warmup": a.warmup,
        "threads": torch.get_num_threads(), "pool": a.pool,
        "step_s": wall, "cpu_s": statistics.median(cpus), "images_per_s": a.batch / wall,
        "cpu_per_wall": sum(cpus) / sum(walls), "peak_rss_mib": peak_rss_mib(),
        "note": "torch %s; %s" % (torch.__version__, ", ".join(s for s in SPEEDUPS if s in ON) or "plain"),
    }))


if __name__ == "__main__":
    main()
