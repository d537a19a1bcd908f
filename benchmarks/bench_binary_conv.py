"""Eval-mode XnorConv2d / BinaryConv2d (frozen) versus nn.Conv2d float32 on VGG-S's layers and
on the 56x56x256 and 28x28x512 3x3 layers of the XNOR targets.

"% roof": the XNOR layer's binary MACs/s over the CPU's popcount roof, nn.Conv2d's FLOP/s over
its float32 FMA roof (each measured right before and after the layer's timing). "x conv at
roof": the speedup an XNOR layer at 100 % of the popcount roof would have over this nn.Conv2d
(the ceiling the roofs' ratio and the float convolution's own efficiency set on this CPU)."""

from __future__ import annotations

import argparse

import torch
from harness import median_seconds, report, roof_percent, timed_with_roof
from torch import nn

import emokernels as ek

# VGG-S at 224x224: (name, in, out, kernel, padding, input side)
LAYERS = [
    ("conv2", 96, 256, 5, 1, 37),
    ("conv3", 256, 512, 3, 1, 18),
    ("conv4", 512, 512, 3, 1, 18),
    ("conv5", 512, 512, 3, 1, 18),
    ("56x56", 256, 256, 3, 1, 56),
    ("28x28", 512, 512, 3, 1, 28),
]


def run(batches: list[int]) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    for name, cin, cout, kernel, padding, side in LAYERS:
        conv = nn.Conv2d(cin, cout, kernel, padding=padding).eval()
        xnor = ek.XnorConv2d.from_conv(conv)
        bwn = ek.BinaryConv2d.from_conv(conv)
        xnor.freeze()
        bwn.freeze()
        xnor.eval()
        bwn.eval()
        for batch in batches:
            x = torch.randn(batch, cin, side, side)
            out_side = side + 2 * padding - kernel + 1
            macs = batch * out_side**2 * cout * cin * kernel**2
            with torch.inference_mode():
                times, roof = {}, {}
                for tag, m, kind in (("conv", conv, "fma"), ("xnor", xnor, "popcount")):
                    times[tag], roof[tag] = timed_with_roof(lambda m=m, x=x: m(x), kind)
                times["bwn"] = median_seconds(lambda m=bwn, x=x: m(x), repeats=10, min_time=0.3)
            rows.append({
                "layer": name, "batch": batch, "shape": f"{cin}->{cout} {kernel}x{kernel} @{side}",
                "conv_ms": 1e3 * times["conv"], "xnor_ms": 1e3 * times["xnor"],
                "bwn_ms": 1e3 * times["bwn"],
                "xnor_speedup": times["conv"] / times["xnor"],
                "bwn_speedup": times["conv"] / times["bwn"],
                "popcount_roof_tmacs": roof["xnor"] / 1e12, "fma_roof_gflops": roof["conv"] / 1e9,
                "xnor_roof_pct": roof_percent(macs / times["xnor"], "popcount", roof["xnor"]),
                "conv_roof_pct": roof_percent(2 * macs / times["conv"], "fma", roof["conv"]),
                # the float layer at its own moment's pace against the popcount roof of the
                # XNOR layer's: both roofs move with the machine, their ratio much less
                "xnor_ceiling": times["conv"] * roof["xnor"] / macs,
            })
    return rows


COLUMNS = [
    ("layer", "layer", ""), ("batch", "batch", "d"), ("shape", "shape", ""),
    ("conv_ms", "conv ms", ".2f"), ("conv_roof_pct", "conv % roof", ".0f"),
    ("xnor_ms", "xnor ms", ".2f"), ("xnor_roof_pct", "xnor % roof", ".0f"),
    ("xnor_speedup", "x conv", ".2f"), ("xnor_ceiling", "x conv at roof", ".1f"),
    ("bwn_ms", "bwn ms", ".2f"),
    ("bwn_speedup", "x conv", ".2f"),
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    report("binary_conv", "VGG-S conv layers, eval mode: binary layers vs nn.Conv2d float32",
           COLUMNS, run(args.batches))
