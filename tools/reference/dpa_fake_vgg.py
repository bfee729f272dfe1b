#!/usr/bin/python3
"""Fake VGG19 weight files for the tests of maddr's perceptual package.

Writes, with seeded random values (not ImageNet weights):
  perceptual/testdata/vgg19_div16.pth   torchvision's names features.N.weight/bias
      for conv1_1..conv4_2 with every width divided by 16 (so it is ~95 KB and can
      be committed), plus one classifier entry the reader must skip; saved by
      torch.save (zip format, as PyTorch >= 1.6 writes).
  pthfile/testdata/small_zip.pth, small_legacy.pth   the same tiny state_dict in
      the zip and the pre-1.6 "legacy" format (torchvision's vgg19-dcbb9e9d.pth is
      legacy): a tensor at an offset inside a shared storage, a transposed
      (non-contiguous) tensor and an int64 tensor.
With --full PATH it also writes a real-shape fake VGG19 (~23 MB, not committed;
--legacy selects the old format), e.g. to exercise MADDR_VGG19_WEIGHTS.

Run from the repository root:  /usr/bin/python3 tools/reference/dpa_fake_vgg.py
"""
import argparse
import collections

import torch

CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21]
WIDTHS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512]


def fake_vgg(divisor, seed):
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    cin = 3
    for idx, w in zip(CONV_INDEX, WIDTHS):
        cout = w // divisor
        # He-uniform weights keep the activations O(1) through the ten layers, so
        # the features are of the size of DPA's ImageNet statistics and the
        # relative perceptual term matters in the parity fixtures.
        bound = (6.0 / (cin * 9)) ** 0.5
        sd["features.%d.weight" % idx] = (torch.rand(cout, cin, 3, 3, generator=g) * 2 - 1) * bound
        sd["features.%d.bias" % idx] = (torch.rand(cout, generator=g) * 2 - 1) * 0.1
        cin = cout
    sd["classifier.6.bias"] = torch.zeros(10)
    return sd


def small_dict():
    shared = torch.arange(8, dtype=torch.float32) * 0.5
    return collections.OrderedDict([
        ("offset", shared[2:5]),                      # storage offset 2
        ("whole", shared),                            # same storage, offset 0
        ("matrix", torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])),
        ("transposed", torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).t()),
        ("count", torch.tensor(7, dtype=torch.int64)),
    ])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", help="also write a real-shape fake VGG19 .pth here")
    ap.add_argument("--legacy", action="store_true", help="write --full in the pre-1.6 format, like vgg19-dcbb9e9d.pth")
    args = ap.parse_args()
    torch.save(fake_vgg(16, 1916), "perceptual/testdata/vgg19_div16.pth")
    torch.save(small_dict(), "pthfile/testdata/small_zip.pth")
    torch.save(small_dict(), "pthfile/testdata/small_legacy.pth", _use_new_zipfile_serialization=False)
    if args.full:
        torch.save(fake_vgg(1, 19), args.full, _use_new_zipfile_serialization=not args.legacy)
        print("wrote", args.full)
    print("wrote perceptual/testdata/vgg19_div16.pth and pthfile/testdata/{small_zip,small_legacy}.pth")


if __name__ == "__main__":
    main()
