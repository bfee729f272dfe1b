#!/usr/bin/python3
"""Golden fixture for the f-AnoGAN baseline (baselines/fanogan/parity_test.go).

Written from METHODS.md section 3.4 and docs/models/fanogan.md, not from the Go
code: the residual WGAN-GP generator and critic, the izif encoder, one critic
step with the gradient penalty (double backward), one generator step, one
encoder step, and the anomaly score. The real width (64 base channels, z of
128) would make the fixture tens of MB, so the networks use 4 base channels
and a 16-d latent at 64x64; the Go test checks the full-width shapes apart.

Recorded: fixed weights (init.*), the batch and the injected noise, the
generator output, critic outputs and features, every loss term, the gradient of
every trainable parameter for each step (each step follows the previous update,
as in training), how far Adam/RMSprop moved each tensor, and after the updates
the generator and encoder outputs, the reconstruction, the score, the anomaly
map and the BatchNorm running statistics.

A second file, fanogan_maddr_parity.safetensors, records one encoder-stage (izif)
step of f-AnoGAN wrapped by MADDR, from fixed weights: mixup, both focal heads
and the center loss on z = E(x) added to the izif loss, RMSprop over the
encoder and the heads; every loss term, and the gradient and the update of
every encoder and head parameter (G and D are frozen and must not move).

Run from the repository root:  /usr/bin/python3 tools/reference/fanogan_parity.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402

OUT = os.path.join("baselines", "fanogan", "testdata", "fanogan_parity.safetensors")
MADDR_OUT = os.path.join("baselines", "fanogan", "testdata", "fanogan_maddr_parity.safetensors")
MADDR_DIMS = (4, 4)

SIZE = 64
WIDTH = 4
LATENT = 16
BATCH = 4
GP_WEIGHT = 10.0
KAPPA = 1.0


def channels(res):
    # width at a resolution: base width at full size, doubling per halving, capped at 8x
    return WIDTH * min(8, SIZE // res)


class ChannelLayerNorm(nn.Module):
    """Normalise each sample over (C, H, W); scale and shift per channel."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(c, 1, 1))

    def forward(self, x):
        mu = x.mean(dim=(1, 2, 3), keepdim=True)
        var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class UpBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)
        # No biases on the block outputs: every generator block feeds a
        # BatchNorm (directly or through the next skip), which cancels them.
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        h = self.conv1(up(F.relu(self.norm1(x))))
        h = self.conv2(F.relu(self.norm2(h)))
        return self.skip(up(x)) + h


class DownBlock(nn.Module):
    def __init__(self, cin, cout, norm):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1, bias=False)
        self.norm2 = norm(cin)
        self.conv2 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.relu(self.norm1(x)))
        h = F.avg_pool2d(self.conv2(F.relu(self.norm2(h))), 2)
        return self.skip(F.avg_pool2d(x, 2)) + h


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(LATENT, 16 * channels(4))
        self.blocks = nn.ModuleDict()
        r = 4
        while r < SIZE:
            self.blocks["up_%d" % (2 * r)] = UpBlock(channels(r), channels(2 * r))
            r *= 2
        self.out_norm = nn.BatchNorm2d(WIDTH)
        self.out_conv = nn.Conv2d(WIDTH, 1, 3, padding=1)

    def forward(self, z):
        h = self.fc(z).view(-1, channels(4), 4, 4)
        for b in self.blocks.values():
            h = b(h)
        return torch.tanh(self.out_conv(F.relu(self.out_norm(h))))


class Trunk(nn.Module):
    """Critic/encoder body: stem conv, down blocks to 4x4, flatten."""

    def __init__(self, norm):
        super().__init__()
        self.stem = nn.Conv2d(1, WIDTH, 3, padding=1)
        self.blocks = nn.ModuleDict()
        r = SIZE
        while r > 4:
            self.blocks["down_%d" % (r // 2)] = DownBlock(channels(r), channels(r // 2), norm)
            r //= 2

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks.values():
            h = b(h)
        return h.flatten(1)


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = Trunk(ChannelLayerNorm)
        self.fc = nn.Linear(16 * channels(4), 1)

    def forward(self, x):
        f = self.trunk(x)
        return self.fc(f).view(-1), f


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = Trunk(nn.BatchNorm2d)
        self.fc = nn.Linear(16 * channels(4), LATENT)

    def forward(self, x):
        return torch.tanh(self.fc(self.trunk(x)))


def izif_terms(encoder, gen_net, critic, x):
    """izif's training terms for images x: z = E(x), the image term mean (x - G(z))^2
    and the critic-feature term mean (f(x) - f(G(z)))^2 (weighted by KAPPA in the loss)."""
    z = encoder(x)
    rec = gen_net(z)
    _, f_rec = critic(rec)
    _, f_x = critic(x)
    return z, ((x - rec) ** 2).mean(), ((f_x - f_rec) ** 2).mean()


def go_name(prefix, k):
    # The Go store has no "trunk" or "blocks" levels.
    return prefix + "." + k.replace("trunk.", "").replace("blocks.", "")


def randomise(module, gen):
    # Default init leaves norm weights at 1 and biases at 0; spread them so the
    # test sees every affine parameter and running statistic at work.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (1.0 if name.endswith("weight") else 0.0))


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen_net, critic, encoder = Generator(), Critic(), Encoder()
    g = torch.Generator().manual_seed(1)
    for m in (gen_net, critic, encoder):
        randomise(m, g)

    out = {}
    nets = (("gen", gen_net), ("critic", critic), ("enc", encoder))
    for prefix, m in nets:
        for k, v in m.state_dict().items():
            out["init." + go_name(prefix, k)] = to_numpy(v)

    x = torch.rand(BATCH, 1, SIZE, SIZE, generator=g) * 2 - 1
    z = torch.randn(BATCH, LATENT, generator=g)
    eps = torch.rand(BATCH, 1, 1, 1, generator=g)
    z_gen = torch.randn(BATCH, LATENT, generator=g)
    out.update({"x": to_numpy(x), "z": to_numpy(z), "eps": to_numpy(eps), "z_gen": to_numpy(z_gen)})

    before = {prefix + "." + k: p.detach().clone() for prefix, m in nets for k, p in m.named_parameters()}
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_e = torch.optim.RMSprop(encoder.parameters(), lr=5e-5)

    # Critic step: fake images from a generator in training mode, no gradient to it.
    gen_net.train()
    encoder.train()
    with torch.no_grad():
        fake = gen_net(z)
    out["fake"] = to_numpy(fake)
    d_real, f_real = critic(x)
    d_fake, _ = critic(fake)
    x_hat = (eps * x + (1 - eps) * fake).requires_grad_(True)
    d_hat, _ = critic(x_hat)
    grad, = torch.autograd.grad(d_hat, x_hat, grad_outputs=torch.ones_like(d_hat), create_graph=True)
    gp = ((grad.reshape(BATCH, -1).norm(2, dim=1) - 1) ** 2).mean()
    d_wgan = d_fake.mean() - d_real.mean()
    d_loss = d_wgan + GP_WEIGHT * gp
    opt_d.zero_grad()
    d_loss.backward()
    out.update({"critic_real": to_numpy(d_real), "critic_fake": to_numpy(d_fake), "features_real": to_numpy(f_real),
                "d_wgan": to_numpy(d_wgan.reshape(1)), "gp": to_numpy(gp.reshape(1)), "d_loss": to_numpy(d_loss.reshape(1))})
    for k, p in critic.named_parameters():
        out["grad_d." + go_name("critic", k)] = to_numpy(p.grad)
    opt_d.step()

    # Generator step, against the critic just updated.
    opt_g.zero_grad()
    critic.zero_grad()
    g_loss = -critic(gen_net(z_gen))[0].mean()
    g_loss.backward()
    out["g"] = to_numpy(g_loss.reshape(1))
    for k, p in gen_net.named_parameters():
        out["grad_g." + go_name("gen", k)] = to_numpy(p.grad)
    opt_g.step()

    # izif encoder step: generator in inference mode, critic frozen.
    gen_net.eval()
    for p in list(gen_net.parameters()) + list(critic.parameters()):
        p.requires_grad_(False)
    opt_e.zero_grad()
    z_enc, izif_img, izif_feat = izif_terms(encoder, gen_net, critic, x)
    (izif_img + KAPPA * izif_feat).backward()
    out.update({"izif_img": to_numpy(izif_img.reshape(1)), "izif_feat": to_numpy(izif_feat.reshape(1))})
    for k, p in encoder.named_parameters():
        out["grad_e." + go_name("enc", k)] = to_numpy(p.grad)
    opt_e.step()

    # How far each optimizer moved each tensor (full tensors would not fit the size budget).
    for prefix, m in nets:
        for k, p in m.named_parameters():
            n = go_name(prefix, k)
            delta = p.detach() - before[prefix + "." + k]
            out["moved." + n] = to_numpy(torch.stack([delta.abs().sum(), delta.sum()]))

    # Evaluation mode after the three updates.
    encoder.eval()
    with torch.no_grad():
        out["gen_eval"] = to_numpy(gen_net(z))
        ze = encoder(x)
        out["z_enc_eval"] = to_numpy(ze)
        r = gen_net(ze)
        _, fx = critic(x)
        _, fr = critic(r)
        score = ((x - r) ** 2).mean(dim=(1, 2, 3)) + KAPPA * ((fx - fr) ** 2).mean(dim=1)
        out["rec"] = to_numpy(r)
        out["score"] = to_numpy(score)
        out["anomaly_map"] = to_numpy((x - r) ** 2)
    for prefix, m in nets:
        for k, v in m.state_dict().items():
            if "running" in k:
                out["final." + go_name(prefix, k)] = to_numpy(v)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save(OUT, out, {"generator": "tools/reference/fanogan_parity.py", "torch": torch.__version__})
    print("wrote", OUT, "(%d tensors)" % len(out))
    maddr_step()


def maddr_step():
    import maddr_losses as ml
    torch.manual_seed(24)
    gen_net, critic, encoder = Generator(), Critic(), Encoder()
    g = torch.Generator().manual_seed(25)
    for m in (gen_net, critic, encoder):
        randomise(m, g)
    heads = ml.maddr_heads(*MADDR_DIMS)
    x = torch.rand(BATCH, 1, SIZE, SIZE, generator=g) * 2 - 1
    out, meta = {"input": to_numpy(x)}, {"generator": "tools/reference/fanogan_parity.py", "torch": torch.__version__}
    for prefix, m in (("gen", gen_net), ("critic", critic), ("enc", encoder)):
        for k, v in m.state_dict().items():
            out["init." + go_name(prefix, k)] = to_numpy(v)
    ml.record_maddr_setup(out, meta, heads, *MADDR_DIMS)
    params = [(go_name("enc", k), p) for k, p in encoder.named_parameters()] + \
        [("maddr." + k, p) for k, p in heads.named_parameters()]
    before = {k: p.detach().clone() for k, p in params}
    opt_e = torch.optim.RMSprop([p for _, p in params], lr=5e-5)

    gen_net.eval()
    encoder.train()
    for p in list(gen_net.parameters()) + list(critic.parameters()):
        p.requires_grad_(False)
    xm = ml.mixup(x)
    opt_e.zero_grad()
    z, izif_img, izif_feat = izif_terms(encoder, gen_net, critic, xm)
    terms = ml.constraint_terms(z, heads, *MADDR_DIMS)
    (izif_img + KAPPA * izif_feat + sum(terms.values())).backward()
    opt_e.step()
    for k, v in dict(terms, izif_img=izif_img, izif_feat=izif_feat).items():
        out["loss." + k] = to_numpy(v.reshape(1))
    ml.record_update(out, params, before)
    save(MADDR_OUT, out, meta)
    print("wrote", MADDR_OUT, os.path.getsize(MADDR_OUT), "bytes")


if __name__ == "__main__":
    main()
