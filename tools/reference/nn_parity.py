#!/usr/bin/python3
"""Golden fixture for maddr's nn parity test (nn/parity_test.go).

A small network that touches every layer kind the baselines use (conv with
stride/dilation/groups, 2-D and 1-D batch norm in training and eval, leaky ReLU, max and
average pooling, linear, nearest and bilinear upsampling, transposed conv),
fixed weights from torch.manual_seed, one fixed batch. Records the output,
the loss, every parameter gradient, the input gradient, and the parameters and
BatchNorm statistics after 3 Adam steps; plus 3 steps of SGD-momentum and
RMSprop on a tiny quadratic.

Run from the repository root:  /usr/bin/python3 tools/reference/nn_parity.py
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402

OUT = os.path.join("nn", "testdata", "parity_small_net.safetensors")


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)  # a bias before BN has zero gradient
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.fc1 = nn.Linear(128, 16, bias=False)
        self.bn_fc = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 128)
        self.deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.head = nn.Conv2d(4, 1, 1, bias=False)

    def forward(self, x):
        h = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)          # 8x16x16
        h = F.max_pool2d(h, 2)                                    # 8x8x8
        h = F.avg_pool2d(F.relu(self.conv2(h)), 2)                # 8x4x4
        z = self.fc2(torch.tanh(self.bn_fc(self.fc1(h.flatten(1)))))  # 128
        h = F.interpolate(z.view(-1, 8, 4, 4), scale_factor=2, mode="nearest")  # 8x8x8
        h = torch.sigmoid(self.deconv(h))                         # 4x16x16
        h = F.interpolate(h, size=(32, 32), mode="bilinear", align_corners=False)
        h = F.avg_pool2d(h, 2)                                    # 4x16x16
        return self.head(h)


def loss_fn(y, x):
    return (y - x).abs().mean() + 0.5 * ((y - x) ** 2).mean()


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = SmallNet()
    x = torch.randn(4, 1, 16, 16)
    out = {"input": to_numpy(x)}
    for k, v in net.state_dict().items():
        out["init." + k] = to_numpy(v)

    xin = x.clone().requires_grad_(True)
    y = net(xin)
    loss = loss_fn(y, xin)
    loss.backward()
    out["output"] = to_numpy(y)
    out["loss"] = to_numpy(loss.reshape(1))
    out["grad.input"] = to_numpy(xin.grad)
    for k, p in net.named_parameters():
        out["grad." + k] = to_numpy(p.grad)

    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    opt.step()
    for _ in range(2):
        opt.zero_grad()
        loss_fn(net(x), x).backward()
        opt.step()
    for k, v in net.state_dict().items():
        out["adam3." + k] = to_numpy(v)
    net.eval()
    with torch.no_grad():
        out["eval_output"] = to_numpy(net(x))

    # Optimizers on f(p) = sum(c * p^2): 3 steps each.
    c = torch.tensor([0.5, -1.0, 2.0, 3.0, 0.25])
    p0 = torch.tensor([1.0, -2.0, 0.5, 0.3, -1.5])
    out["quad.c"] = to_numpy(c)
    out["quad.p0"] = to_numpy(p0)
    configs = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
        "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01, weight_decay=0.01),
        "rmsprop_momentum": lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5),
        "adam_betas": lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.0, 0.9)),
    }
    for name, make in configs.items():
        p = p0.clone().requires_grad_(True)
        o = make([p])
        for _ in range(3):
            o.zero_grad()
            (c * p * p).sum().backward()
            o.step()
        out["quad." + name] = to_numpy(p)

    save(OUT, out, {"generator": "tools/reference/nn_parity.py", "torch": torch.__version__})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
