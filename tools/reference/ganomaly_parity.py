#!/usr/bin/python3
"""Golden fixtures for the GANomaly baseline (baselines/ganomaly/parity_test.go).

Written from METHODS.md 3.3. Two files, one per variant:
* ganomaly_parity.safetensors: the original DCGAN GANomaly (E1, G, E2 and D
  with DCGAN init; tanh output; L1 reconstruction; Adam 2e-4, betas (0.5, 0.999)),
  small: 32x32 input, ngf = ndf = 8, nz 16.
* ganomaly_medianomaly_parity.safetensors: the MedIAnomaly variant (backbone of
  ae_parity.py, MLP heads without BatchNorm, L2 reconstruction, Adam 1e-3),
  small: 32x32, base width 4, hidden 16, latent 16.

One iteration on a fixed batch: the G step (loss 1*MSE(f(x), f(x_hat)) +
50*rec + 1*MSE(z, z_hat) + the stand-in MADDR hook of ae_parity.py on z), then
the D step (0.5*(BCE(D(x), 1) + BCE(D(x_hat.detach()), 0)), x_hat from before
the G update). Records every forward output, each loss term, the G-step
gradients of G's parameters, the D-step gradients of D's parameters, a few
parameters after both Adam updates, and the eval-mode score mean (z - z_hat)^2
at the initial weights.

A third file, ganomaly_maddr_parity.safetensors, records one iteration of the
original variant wrapped by MADDR: mixup, both focal heads and the center loss
on z = E1(x) added to the G loss (the heads train with G's Adam), then the D
step; every loss term, and the gradient and the update of every parameter of
G, D and the heads.

Run from the repository root:  /usr/bin/python3 tools/reference/ganomaly_parity.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402
from ae_parity import LatentEncoder, LatentDecoder, Trunk, hook_loss, count, record_state  # noqa: E402

DIR = os.path.join("baselines", "ganomaly", "testdata")
MADDR_DIMS = (4, 4)


def block(conv, bn_ch, act):
    m = nn.Module()
    m.conv = conv
    if bn_ch:
        m.bn = nn.BatchNorm2d(bn_ch)
    m.act = act
    return m


def run_block(m, x):
    h = m.conv(x)
    if hasattr(m, "bn"):
        h = m.bn(h)
    return m.act(h) if m.act is not None else h


def lrelu(x):
    return F.leaky_relu(x, 0.2)


class DCGANEncoder(nn.Module):
    """conv4x4 s2 (1 -> w) + LReLU; conv s2 + BN + LReLU doubling to 4x4; conv4x4 valid -> out."""

    def __init__(self, size, width, out):
        super().__init__()
        self.initial = block(nn.Conv2d(1, width, 4, 2, 1, bias=False), 0, lrelu)
        ch, side, self.n = width, size // 2, 0
        while side > 4:
            setattr(self, "pyramid%d" % self.n, block(nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), 2 * ch, lrelu))
            ch, side, self.n = 2 * ch, side // 2, self.n + 1
        self.final = block(nn.Conv2d(ch, out, 4, 1, 0, bias=False), 0, None)

    def features(self, x):
        h = run_block(self.initial, x)
        for i in range(self.n):
            h = run_block(getattr(self, "pyramid%d" % i), h)
        return h

    def forward(self, x):
        return run_block(self.final, self.features(x)).flatten(1)


class DCGANDecoder(nn.Module):
    def __init__(self, size, width, latent):
        super().__init__()
        ch, side = width // 2, 4
        while side != size:
            ch, side = ch * 2, side * 2
        self.latent = latent
        self.initial = block(nn.ConvTranspose2d(latent, ch, 4, 1, 0, bias=False), ch, torch.relu)
        side, self.n = 4, 0
        while side < size // 2:
            setattr(self, "pyramid%d" % self.n, block(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), ch // 2, torch.relu))
            ch, side, self.n = ch // 2, side * 2, self.n + 1
        self.final = block(nn.ConvTranspose2d(ch, 1, 4, 2, 1, bias=False), 0, torch.tanh)

    def forward(self, z):
        h = run_block(self.initial, z.view(-1, self.latent, 1, 1))
        for i in range(self.n):
            h = run_block(getattr(self, "pyramid%d" % i), h)
        return run_block(self.final, h)


def dcgan_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        m.weight.data.normal_(0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


class OriginalD(DCGANEncoder):
    def __init__(self, size, width):
        super().__init__(size, width, 1)

    def forward(self, x):
        f = self.features(x)
        return torch.sigmoid(run_block(self.final, f)).view(-1), f


class MedIAnomalyD(Trunk):
    def __init__(self, size, base, hidden):
        super().__init__(size, base)
        from ae_parity import channels
        self.feat = nn.Linear(channels(size, base)[-1] * 16, hidden)
        self.cls = nn.Linear(hidden, 1)

    def forward(self, x):
        f = torch.relu(self.feat(super().forward(x)))
        return torch.sigmoid(self.cls(f)).view(-1), f


class Generator(nn.Module):
    def __init__(self, enc1, dec, enc2):
        super().__init__()
        self.enc1, self.dec, self.enc2 = enc1, dec, enc2

    def forward(self, x):
        z = self.enc1(x)
        x_hat = self.dec(z)
        return z, x_hat, self.enc2(x_hat)


class GANomaly(nn.Module):
    def __init__(self, g, d):
        super().__init__()
        self.g, self.d = g, d


def original(size, width, latent):
    g = Generator(DCGANEncoder(size, width, latent), DCGANDecoder(size, width, latent), DCGANEncoder(size, width, latent))
    net = GANomaly(g, OriginalD(size, width))
    net.apply(dcgan_init)
    return net


def medianomaly(size, base, hidden, latent):
    g = Generator(LatentEncoder(size, base, hidden, latent, False), LatentDecoder(size, base, hidden, latent, False),
                  LatentEncoder(size, base, hidden, latent, False))
    return GANomaly(g, MedIAnomalyD(size, base, hidden))


def g_terms(net, x, rec_kind="l1"):
    """G's forward on x and the three terms of its loss: returns the forward's tensors
    (z, x_hat, z_hat, pred_real, feat_real, feat_fake) and (adv, rec, enc)."""
    z, x_hat, z_hat = net.g(x)
    pred_real, feat_real = net.d(x)
    _, feat_fake = net.d(x_hat)
    # f(x) does not depend on G; detached so that D(x) can serve the D step too
    adv = ((feat_real.detach() - feat_fake) ** 2).mean()
    rec = (x_hat - x).abs().mean() if rec_kind == "l1" else ((x_hat - x) ** 2).mean()
    enc = ((z - z_hat) ** 2).mean()
    return (z, x_hat, z_hat, pred_real, feat_real, feat_fake), (adv, rec, enc)


def d_terms(net, pred_real, x_hat):
    """D's loss on the real predictions of G's step and on G's detached output:
    returns pred_fake, d_real, d_fake and d = (d_real + d_fake) / 2."""
    pred_fake, _ = net.d(x_hat.detach())
    d_real = F.binary_cross_entropy(pred_real, torch.ones_like(pred_real))
    d_fake = F.binary_cross_entropy(pred_fake, torch.zeros_like(pred_fake))
    return pred_fake, d_real, d_fake, 0.5 * (d_real + d_fake)


def one_iteration(net, x, rec_kind, lr, betas, after):
    out = {"input": to_numpy(x)}
    record_state(out, "init.", net)
    net.eval()
    with torch.no_grad():
        z, _, z_hat = net.g(x)
        out["score"] = to_numpy(((z - z_hat) ** 2).mean(1))
    net.train()

    opt_g = torch.optim.Adam(net.g.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(net.d.parameters(), lr=lr, betas=betas)
    opt_g.zero_grad()
    (z, x_hat, z_hat, pred_real, feat_real, feat_fake), (adv, rec, enc) = g_terms(net, x, rec_kind)
    hook = hook_loss(z)
    g_loss = adv + 50 * rec + enc + hook
    g_loss.backward()
    for k, p in net.g.named_parameters():
        out["grad.g." + k] = to_numpy(p.grad)
    opt_g.step()

    opt_d.zero_grad()
    pred_fake, d_real, d_fake, d_loss = d_terms(net, pred_real, x_hat)
    d_loss.backward()
    for k, p in net.d.named_parameters():
        out["grad.d." + k] = to_numpy(p.grad)
    opt_d.step()

    for k, v in dict(z=z, x_hat=x_hat, z_hat=z_hat, pred_real=pred_real, feat_real=feat_real,
                     feat_fake=feat_fake, pred_fake=pred_fake).items():
        out[k] = to_numpy(v)
    for k, v in dict(g_adv=adv, g_rec=rec, g_enc=enc, hook=hook, g=g_loss, d_real=d_real, d_fake=d_fake,
                     d=d_loss).items():
        out["loss." + k] = to_numpy(v.reshape(1))
    for k in after:
        out["after." + k] = to_numpy(net.state_dict()[k])
    return out


def main():
    torch.set_num_threads(1)
    torch.manual_seed(13)
    net = original(32, 8, 16)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    out = one_iteration(net, x, "l1", 2e-4, (0.5, 0.999),
                        ["g.enc1.final.conv.weight", "g.dec.pyramid0.conv.weight", "d.pyramid1.conv.weight"])
    path = os.path.join(DIR, "ganomaly_parity.safetensors")
    save(path, out, {"generator": "tools/reference/ganomaly_parity.py", "torch": torch.__version__,
                     "default_num_params": count(original(64, 64, 100))})
    print("wrote", path, os.path.getsize(path), "bytes")

    torch.manual_seed(14)
    net = medianomaly(32, 4, 16, 16)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    out = one_iteration(net, x, "l2", 1e-3, (0.9, 0.999),
                        ["g.enc1.fc2.weight", "g.dec.up0.conv.weight", "d.feat.weight"])
    path = os.path.join(DIR, "ganomaly_medianomaly_parity.safetensors")
    save(path, out, {"generator": "tools/reference/ganomaly_parity.py", "torch": torch.__version__,
                     "default_num_params": count(medianomaly(64, 16, 1024, 128))})
    print("wrote", path, os.path.getsize(path), "bytes")
    maddr_step()


def maddr_step():
    import maddr_losses as ml
    torch.manual_seed(23)
    net = original(32, 8, 16)
    heads = ml.maddr_heads(*MADDR_DIMS)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out, meta = {"input": to_numpy(x)}, {"generator": "tools/reference/ganomaly_parity.py", "torch": torch.__version__}
    record_state(out, "init.", net)
    ml.record_maddr_setup(out, meta, heads, *MADDR_DIMS)
    g_params = [("g." + k, p) for k, p in net.g.named_parameters()] + [("maddr." + k, p) for k, p in heads.named_parameters()]
    d_params = [("d." + k, p) for k, p in net.d.named_parameters()]
    before = {k: p.detach().clone() for k, p in g_params + d_params}
    opt_g = torch.optim.Adam([p for _, p in g_params], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([p for _, p in d_params], lr=2e-4, betas=(0.5, 0.999))

    xm = ml.mixup(x)
    opt_g.zero_grad()
    (z, x_hat, _, pred_real, _, _), (adv, rec, enc) = g_terms(net, xm)
    terms = ml.constraint_terms(z, heads, *MADDR_DIMS)
    g_loss = adv + 50 * rec + enc + sum(terms.values())
    g_loss.backward()
    opt_g.step()

    opt_d.zero_grad()
    pred_fake, d_real, d_fake, d_loss = d_terms(net, pred_real, x_hat)
    d_loss.backward()
    opt_d.step()

    for k, v in dict(terms, g_adv=adv, g_rec=rec, g_enc=enc, g=g_loss, d=d_loss).items():
        out["loss." + k] = to_numpy(v.reshape(1))
    ml.record_update(out, g_params + d_params, before)
    path = os.path.join(DIR, "ganomaly_maddr_parity.safetensors")
    save(path, out, meta)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
