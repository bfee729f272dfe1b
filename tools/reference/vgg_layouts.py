"""VGG19-to-r42 forward (no autograd) in fp32 and under bf16 autocast, NCHW and
channels-last: which comparison gives "bf16 is 2.5x fp32" (issue #14) and
which gives the ~1.9x that bounds bf16 scoring (BENCHMARKS.md).

    OMP_WAIT_POLICY=passive /usr/bin/python3 tools/reference/vgg_layouts.py [--batch 32] [--size 64] [--steps 15]

Prints one line per variant (median ms over the timed passes) and the ratios.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch  # noqa: E402


def variant(channels_last, bf16, batch, size, steps, warmup):
    bench_torch.ON.clear()
    if channels_last:
        bench_torch.ON.add("channels-last")
    torch.manual_seed(1)
    vgg = bench_torch.RandomVGG()
    x = torch.rand(batch, 1, size, size) * 2 - 1
    times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = vgg.features(x)
            else:
                out = vgg.features(x)
            float(out["r42"].float().sum())
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ms = {}
    for cl in (False, True):
        for bf16 in (False, True):
            name = ("bf16" if bf16 else "fp32") + (" channels-last" if cl else " NCHW")
            ms[name] = variant(cl, bf16, a.batch, a.size, a.steps, a.warmup)
            print("%-19s %7.1f ms" % (name, ms[name]))
    print("bf16 channels-last against fp32 NCHW:          %.2fx" % (ms["fp32 NCHW"] / ms["bf16 channels-last"]))
    print("bf16 channels-last against fp32 channels-last: %.2fx" % (ms["fp32 channels-last"] / ms["bf16 channels-last"]))
    print("fp32 channels-last against fp32 NCHW:          %.2fx" % (ms["fp32 NCHW"] / ms["fp32 channels-last"]))


if __name__ == "__main__":
    main()
