#!/usr/bin/python3
"""Per-layer timing of the two ways libtorch 1.13 can compute a transposed
convolution on the CPU, for the layers maddr's baselines use at 64x64:

  direct:   at::conv_transpose2d (libtorch 1.13: im2col + one GEMM per image);
  gradient: the input gradient of the matching convolution
            (aten::convolution_backward, which runs in oneDNN).

Both compute the same function; the table gives the largest difference of the
outputs relative to the largest output. maddr's torch.ConvTranspose2d takes the
gradient path for batches of >= 8 images and >= 8 output channels; this script
is the measurement behind those thresholds (BENCHMARKS.md, "Transposed
convolutions").

Usage: OMP_WAIT_POLICY=passive /usr/bin/python3 tools/reference/deconv_kernels.py [--threads N]
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

# (model, in, out, input side, kernel, stride, padding)
LAYERS = [
    ("AE/MemAE up0", 128, 64, 4, 4, 2, 1),
    ("AE/MemAE up1", 64, 32, 8, 4, 2, 1),
    ("AE/MemAE up2", 32, 16, 16, 4, 2, 1),
    ("AE/MemAE up3", 16, 1, 32, 4, 2, 1),
    ("GANomaly initial", 100, 512, 1, 4, 1, 0),
    ("GANomaly pyramid0", 512, 256, 4, 4, 2, 1),
    ("GANomaly pyramid1", 256, 128, 8, 4, 2, 1),
    ("GANomaly pyramid2", 128, 64, 16, 4, 2, 1),
    ("GANomaly final", 64, 1, 32, 4, 2, 1),
    ("(probe)", 16, 4, 32, 4, 2, 1),
    ("(probe)", 16, 8, 32, 4, 2, 1),
]


def by_gradient(x, w, stand_in, stride, padding):
    return torch.ops.aten.convolution_backward(x, stand_in, w, None, [stride] * 2, [padding] * 2, [1, 1], False,
                                               [0, 0], 1, [True, False, False])[0]


def ms(fn, reps):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(0)
    print("torch %s, %d threads; best of 3 x %d repetitions, ms per call" % (torch.__version__, torch.get_num_threads(), a.reps))
    print()
    print("| layer | batch | forward direct / gradient | forward+backward direct / gradient | relative difference |")
    print("|---|---|---|---|---|")
    for name, cin, cout, side, k, s, p in LAYERS:
        for batch in (32, 8, 1):
            x = torch.randn(batch, cin, side, side)
            w = torch.randn(cin, cout, k, k) * 0.05
            out_side = (side - 1) * s - 2 * p + k
            stand_in = torch.empty(batch, cout, out_side, out_side)
            upstream = torch.randn(batch, cout, out_side, out_side)
            with torch.no_grad():
                ref = F.conv_transpose2d(x, w, stride=s, padding=p)
                diff = (by_gradient(x, w, stand_in, s, p) - ref).abs().max().item() / ref.abs().max().item()
                fwd_direct = ms(lambda: F.conv_transpose2d(x, w, stride=s, padding=p), a.reps)
                fwd_grad = ms(lambda: by_gradient(x, w, stand_in, s, p), a.reps)
            xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
            train_direct = ms(lambda: F.conv_transpose2d(xg, wg, stride=s, padding=p).backward(upstream), a.reps)
            train_grad = ms(lambda: by_gradient(xg, wg, stand_in, s, p).backward(upstream), a.reps)

            def cell(d, g):
                return "%.3f / %.3f (%.2fx)" % (d, g, d / g)
            print("| %s %d->%d, %dx%d | %d | %s | %s | %.1e |" % (name, cin, cout, side, side, batch,
                  cell(fwd_direct, fwd_grad), cell(train_direct, train_grad), diff))


if __name__ == "__main__":
    main()
