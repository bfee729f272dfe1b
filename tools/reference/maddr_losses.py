#!/usr/bin/python3
"""Golden values for MADDR's focal and center losses (maddr/losses_test.go).

Written from the paper and METHODS.md, deliberately in the most literal form:
the focal loss from softmax probabilities, the center loss with an explicit
leave-one-out mean per sample (not the batch-mean identity the Go code uses).

Run from the repository root:  /usr/bin/python3 tools/reference/maddr_losses.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import save, to_numpy  # noqa: E402

OUT = os.path.join("maddr", "testdata", "losses.safetensors")


def focal(logits, y, alpha, gamma):
    p = torch.softmax(logits.double(), dim=1)
    py = p[torch.arange(len(y)), y]
    a = torch.tensor(alpha, dtype=torch.float64)[y]
    return (a * (1 - py) ** gamma * -torch.log(py)).mean()


def center_eq4(zc, mean_dims=False):
    b = zc.shape[0]
    total = 0
    for i in range(b):
        others = torch.cat([zc[:i], zc[i + 1:]])
        m = others.sum(0) / (b - 1)
        d = ((zc[i] - m) ** 2).sum()
        if mean_dims:
            d = d / zc.shape[1]
        total = total + d
    return total / b


def center_code(zc):
    b = zc.shape[0]
    return sum((b / (b - 1)) ** 2 * zc[i].var(unbiased=True) for i in range(b)) / (3 * b)


# One MADDR training step as every <baseline>_parity.py records it: a batch of
# four images mixed with a fixed lambda and permutation, two-class organ and
# modality labels, and the paper's weights (all 1).
MIX_LAM = 0.3
MIX_PERM = [2, 0, 3, 1]
ORGAN = [0, 1, 1, 0]      # liver, lung
MODALITY = [0, 0, 1, 1]   # ct, xray
FOCAL_ALPHA = [0.25, 0.75]


def maddr_heads(modality_dims, organ_dims):
    """The two classifier heads with PyTorch's default init (global RNG)."""
    return torch.nn.ModuleDict({"modality_head": torch.nn.Linear(modality_dims, 2),
                                "organ_head": torch.nn.Linear(organ_dims, 2)})


def mixup(x):
    return MIX_LAM * x + (1 - MIX_LAM) * x[torch.tensor(MIX_PERM)]


def constraint_terms(z, heads, modality_dims, organ_dims):
    """Focal losses on z[0:m] and z[m:m+o] (each lam*FL(y) + (1-lam)*FL(y[perm]))
    and the eq. 4 center loss on the rest of z, by their logged names."""
    zf = z.reshape(z.shape[0], -1)
    perm = torch.tensor(MIX_PERM)

    def mixed_focal(head, part, y):
        y = torch.tensor(y)
        logits = head(part)
        return (MIX_LAM * focal(logits, y, FOCAL_ALPHA, 2.0) + (1 - MIX_LAM) * focal(logits, y[perm], FOCAL_ALPHA, 2.0)).float()

    m, o = modality_dims, organ_dims
    return {"focal_modality": mixed_focal(heads["modality_head"], zf[:, :m], MODALITY),
            "focal_organ": mixed_focal(heads["organ_head"], zf[:, m:m + o], ORGAN),
            "center": center_eq4(zf[:, m + o:]).float()}


def record_maddr_setup(out, meta, heads, modality_dims, organ_dims):
    """Stores the heads' initial weights (under the Go store's maddr. prefix),
    the mixup draw and the labels."""
    for k, v in heads.state_dict().items():
        out["init.maddr." + k] = to_numpy(v)
    out["mix.lam"] = to_numpy(torch.tensor([MIX_LAM], dtype=torch.float32))
    out["mix.perm"] = to_numpy(torch.tensor(MIX_PERM))
    out["labels.organ"] = to_numpy(torch.tensor(ORGAN))
    out["labels.modality"] = to_numpy(torch.tensor(MODALITY))
    meta["modality_dims"] = modality_dims
    meta["organ_dims"] = organ_dims


def record_update(out, named_params, before):
    """grad.<name> and update.<name> (= after - before) of every parameter the
    step's optimizers own."""
    for name, p in named_params:
        if p.grad is not None:
            out["grad." + name] = to_numpy(p.grad)
        out["update." + name] = to_numpy(p.detach() - before[name])


def main():
    g = torch.Generator().manual_seed(1234)
    out = {}
    for name, k, alpha in [("k2", 2, [0.25, 0.75]), ("k3", 3, [0.25, 0.75, 0.75]), ("uniform", 2, [0.25, 0.25])]:
        logits = (torch.randn(8, k, generator=g) * 3).double().requires_grad_(True)
        y = torch.randint(0, k, (8,), generator=g)
        loss = focal(logits, y, alpha, 2.0)
        loss.backward()
        out[f"focal.{name}.logits"] = to_numpy(logits.float())
        out[f"focal.{name}.targets"] = to_numpy(y)
        out[f"focal.{name}.alpha"] = to_numpy(torch.tensor(alpha))
        out[f"focal.{name}.loss"] = to_numpy(loss.float().reshape(1))
        out[f"focal.{name}.grad"] = to_numpy(logits.grad.float())
    # mixup: lam * FL(y) + (1 - lam) * FL(y[perm])
    logits = torch.randn(8, 2, generator=g).double().requires_grad_(True)
    y = torch.randint(0, 2, (8,), generator=g)
    perm = torch.randperm(8, generator=g)
    lam = 0.3
    loss = lam * focal(logits, y, [0.25, 0.75], 2.0) + (1 - lam) * focal(logits, y[perm], [0.25, 0.75], 2.0)
    out["mix.logits"], out["mix.targets"], out["mix.perm"] = to_numpy(logits.float()), to_numpy(y), to_numpy(perm)
    out["mix.loss"] = to_numpy(loss.float().reshape(1))

    zc = torch.randn(6, 12, generator=g).double().requires_grad_(True)
    out["center.z"] = to_numpy(zc.float())
    for name, fn in [("sum", lambda z: center_eq4(z)), ("mean", lambda z: center_eq4(z, True)), ("code", center_code)]:
        zc.grad = None
        loss = fn(zc)
        loss.backward()
        out[f"center.{name}.loss"] = to_numpy(loss.float().reshape(1))
        out[f"center.{name}.grad"] = to_numpy(zc.grad.float())
    save(OUT, out, {"generator": "tools/reference/maddr_losses.py", "torch": torch.__version__})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
