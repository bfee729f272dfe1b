#!/usr/bin/python3
"""PyTorch side of `maddr bench`: one case per process, one JSON line on stdout.

The networks are the independent PyTorch implementations written for the parity
fixtures, imported, not copied: DPA and the relative perceptual loss from
dpa_parity.py (here with a full-width VGG19 to r42 with random weights, as the Go
side runs with --vgg-random-init), the MADDR losses from maddr_losses.py, the
MADDR step as in maddr_dpa_parity.py, GANomaly (the original DCGAN variant at
64x64, ngf = ndf = 64, nz 100) from ganomaly_parity.py, AE, MemAE and f-AnoGAN
from ae_parity.py, memae_parity.py and fanogan_parity.py, and every baseline
wrapped by MADDR (maddr_wrap: MADDR's terms join the loss that trains z). Same optimiser (Adam),
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
from maddr_losses import focal  # noqa: E402

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
# Off unless asked for (--with): what maddr does and a PyTorch 1.13 user
# ordinarily does not, so that a run can show where maddr's lead comes from.
#   deconv-by-gradient: a transposed convolution computed as the input gradient
#     of the matching convolution (oneDNN in libtorch 1.13; conv_transpose2d is
#     an im2col + one GEMM per image kernel there), on the batches maddr uses
#     it for (>= 8 images, >= 8 output channels, float32).
OPTIONAL = ("deconv-by-gradient",)

_conv_transpose2d = torch.nn.functional.conv_transpose2d


def conv_transpose2d_by_gradient(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    pair = torch.nn.modules.utils._pair
    stride, padding, output_padding, dilation = pair(stride), pair(padding), pair(output_padding), pair(dilation)
    out_ch = w.shape[1] * groups
    if x.dim() != 4 or x.shape[0] < 8 or out_ch < 8 or x.dtype != torch.float32 or w.dtype != torch.float32:
        return _conv_transpose2d(x, w, bias, stride, padding, output_padding, groups, dilation)
    side = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1) + output_padding[i] + 1
            for i in range(2)]
    stand_in = torch.empty(x.shape[0], out_ch, *side)
    y = torch.ops.aten.convolution_backward(x, stand_in, w, None, list(stride), list(padding), list(dilation),
                                            False, [0, 0], groups, [True, False, False])[0]
    return y if bias is None else y + bias.view(1, -1, 1, 1)


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
    return fm, fo, center_batch_mean(zf[:, 20:])


def center_batch_mean(zc):
    """Eq. 4's center loss as an expert writes it (and as the Go side computes
    it): z_i minus the mean of the other B-1 samples is B/(B-1) (z_i - batch
    mean). maddr_losses.center_eq4 is the literal form with a Python loop over
    the batch (the golden values); both agree to float32 rounding."""
    b = zc.shape[0]
    return (zc - zc.mean(0, keepdim=True)).square().sum(1).mean() * (b / (b - 1)) ** 2


def maddr_heads():
    return nn.ModuleDict({"modality_head": nn.Linear(10, 2), "organ_head": nn.Linear(10, 2)})


def maddr_wrap(base_step, heads):
    """MADDR around a baseline's own update, with mixup on every step (as the Go
    side's maddr-* cases): base_step(xm, hook) trains the baseline on the mixed
    batch xm, adds hook(z) to the loss that trains its latent z (as the Go
    baselines call MADDR's latent hook), and returns the tensors it reads."""
    beta = torch.distributions.Beta(1.0, 1.0)

    def step(x, idx):
        lam = float(beta.sample())
        perm = torch.randperm(x.shape[0])
        xm = lam * x + (1 - lam) * x[perm]

        def hook(z):
            fm, fo, c = maddr_terms(z, idx, lam, perm, heads)
            return fm + fo + c, [fm, fo, c]
        [t.item() for t in base_step(xm, hook)]
    return step


def maddr_train(net, extra_params, a):
    """MADDR around a baseline trained by one Adam: net(xm) returns (total, z,
    terms to read); the heads join that Adam, as on the Go side."""
    heads = maddr_heads()
    opt = torch.optim.Adam(list(extra_params) + list(heads.parameters()), lr=1e-3)

    def base_step(xm, hook):
        base_total, z, read = net(xm)
        extra, terms = hook(z)
        total = base_total + extra
        zero_grad(opt)
        total.backward()
        opt.step()
        return read + terms + [total]
    return maddr_wrap(base_step, heads)


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


def ganomaly_setup(a, extra_g_params=()):
    """The original DCGAN GANomaly at 64x64 (ngf = ndf = 64, nz 100) and its two
    Adams; extra_g_params (MADDR's heads) join G's, as on the Go side."""
    net = gan.original(a.size, 64, 100)
    net.train()
    opt_g = torch.optim.Adam(list(net.g.parameters()) + list(extra_g_params), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return net, opt_g, opt_d


def ganomaly_update(net, opt_g, opt_d, x, hook=None):
    """ganomaly_parity.one_iteration without its recording: G then D on x.
    hook(z) (MADDR's terms on E1's latent) joins G's loss when given.
    Returns the tensors the Go side reads to log them."""
    zero_grad(opt_g)
    (z, x_hat, _, pred_real, _, _), (adv, rec, enc) = gan.g_terms(net, x)
    g_loss = adv + 50 * rec + enc
    read = [adv, rec, enc]
    if hook is not None:
        extra, terms = hook(z)
        g_loss = g_loss + extra
        read += terms
    g_loss.backward()
    opt_g.step()
    zero_grad(opt_d)
    _, d_real, d_fake, d_loss = gan.d_terms(net, pred_real, x_hat)
    d_loss.backward()
    opt_d.step()
    return read + [g_loss, d_real, d_fake, d_loss]


def ganomaly_train(a):
    net, opt_g, opt_d = ganomaly_setup(a)

    def step(x, idx):
        [t.item() for t in ganomaly_update(net, opt_g, opt_d, x)]
    return step


def maddr_ganomaly_train(a):
    """MADDR+GANomaly: GANomaly's G and D steps on the mixed batch, MADDR's terms
    on z = E1(x) in G's loss, the heads trained by G's Adam (as the Go side)."""
    heads = maddr_heads()
    net, opt_g, opt_d = ganomaly_setup(a, heads.parameters())
    return maddr_wrap(lambda xm, hook: ganomaly_update(net, opt_g, opt_d, xm, hook), heads)


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


class FAnoGANStage1:
    """Stage 1 (WGAN-GP): a critic step every call, a generator step every 5th, as the Go side."""

    def __init__(self, gen_net, critic):
        self.gen_net, self.critic = gen_net, critic
        self.opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.opt_g = torch.optim.Adam(gen_net.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.calls = 0
        gen_net.train()

    def __call__(self, x, idx):
        gen_net, critic = self.gen_net, self.critic
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
        zero_grad(self.opt_d)
        d_loss.backward()
        self.opt_d.step()
        d_loss.item()
        self.calls += 1
        if self.calls % 5 == 0:
            zero_grad(self.opt_g)
            g_loss = -critic(gen_net(torch.randn(b, fag.LATENT)))[0].mean()
            g_loss.backward()
            self.opt_g.step()
            g_loss.item()


def fanogan_train(a):
    gen_net, critic, _ = fanogan_nets(a)
    return FAnoGANStage1(gen_net, critic)


def maddr_fanogan_train(a):
    """MADDR+f-AnoGAN, as the Go side's maddr-fanogan-train: one WGAN-GP step
    (the first warm-up step; MADDR has no latent in stage 1, so it is not mixed),
    then izif encoder steps (fanogan_parity.maddr_step) on mixed batches: the
    GAN frozen, the generator in inference mode, MADDR's terms on z = E(x), the
    encoder and the heads trained by one RMSprop."""
    gen_net, critic, encoder = fanogan_nets(a)
    stage1 = FAnoGANStage1(gen_net, critic)
    heads = maddr_heads()
    opt_e = torch.optim.RMSprop(list(encoder.parameters()) + list(heads.parameters()), lr=5e-5)

    def encoder_step(xm, hook):
        zero_grad(opt_e)
        z, izif_img, izif_feat = fag.izif_terms(encoder, gen_net, critic, xm)
        extra, terms = hook(z)
        (izif_img + fag.KAPPA * izif_feat + extra).backward()
        opt_e.step()
        return terms + [izif_img, izif_feat]
    stage2 = maddr_wrap(encoder_step, heads)

    def step(x, idx):
        if stage1.calls < 1:
            stage1(x, idx)
            # Entering stage 2 freezes the GAN (its gradients are dropped).
            gen_net.eval()
            encoder.train()
            for p in list(gen_net.parameters()) + list(critic.parameters()):
                p.grad = None
                p.requires_grad_(False)
            return
        stage2(x, idx)
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


# The *-score-bf16 cases compare the Go side's bf16 scoring with PyTorch's fp32.
# The Go side's dpa-train reuses target features across epochs; PyTorch's
# reference computes them every step in both cases.
CASES = {"dpa-train": dpa_train, "dpa-train-nocache": dpa_train, "maddr-dpa-train": maddr_dpa_train, "ganomaly-train": ganomaly_train,
         "dpa-score": dpa_score, "dpa-score-bf16": dpa_score, "ganomaly-score": ganomaly_score,
         "ae-train": ae_train, "ae-score": ae_score, "memae-train": memae_train, "memae-score": memae_score,
         "maddr-ae-train": maddr_ae_train, "maddr-memae-train": maddr_memae_train,
         "maddr-ganomaly-train": maddr_ganomaly_train, "maddr-fanogan-train": maddr_fanogan_train,
         "fanogan-train": fanogan_train, "fanogan-score": fanogan_score,
         "ae-score-bf16": ae_score, "memae-score-bf16": memae_score, "ganomaly-score-bf16": ganomaly_score,
         "fanogan-score-bf16": fanogan_score}


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
    ap.add_argument("--with", dest="extra", default="", help="comma-separated optional speed-ups to add: " + ", ".join(OPTIONAL))
    a = ap.parse_args()
    ON.clear()
    if not a.plain:
        off = set(filter(None, a.without.split(",")))
        unknown = off - set(SPEEDUPS)
        if unknown:
            ap.error("unknown speed-up(s) %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(SPEEDUPS)))
        ON.update(set(SPEEDUPS) - off)
    extra = set(filter(None, a.extra.split(",")))
    if extra - set(OPTIONAL):
        ap.error("unknown optional speed-up(s) %s (known: %s)" % (", ".join(sorted(extra - set(OPTIONAL))), ", ".join(OPTIONAL)))
    ON.update(extra)
    if "deconv-by-gradient" in ON:
        torch.nn.functional.conv_transpose2d = conv_transpose2d_by_gradient
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
        "note": "torch %s; %s" % (torch.__version__, ", ".join(s for s in SPEEDUPS + OPTIONAL if s in ON) or "plain"),
    }))


if __name__ == "__main__":
    main()
