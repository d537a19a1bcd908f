"""cp_conv2d (the fused CP convolution) versus the dense convolution it replaces and the
four-layer sequence the paper ran, all in the same run.

CPU: dense ``F.conv2d`` (oneDNN) in NCHW and channels-last, the four ``F.conv2d`` stages,
tensorly-torch's factorized CP convolution when it is installed (``tltorch``), and the fused C++
kernel in NCHW and channels-last, timed interleaved (one call of each method per
round, many rounds; medians), so a noisy machine slows every method alike. CUDA: dense cuDNN
(float32, TF32 off, and float16), the four stages and the fused Triton kernel. "% roof" (CPU):
a method's multiply-adds (2 FLOPs each) per second over the CPU's measured float32 FMA roof.
Layers: the paper's SqueezeNet-1.1 fire8/fire9 3x3 expand (64->256) at 224 and 64 input, a
64->256 layer at 56x56, VGG-S conv2/conv3, at rank 192 (and a sweep of ranks), batch 1 and 32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from harness import bench, is_cuda, ratio_text, report, roof_percent, roofs
from torch import nn

from emokernels import ops

try:  # optional: the factorized layers users of TensorLy reach for
    import tltorch
except ImportError:
    tltorch = None

# name: (C, N, k, stride, padding, H)
LAYERS = {
    "64->256 3x3 @56": (64, 256, 3, 1, 1, 56),
    "fire9 64->256 3x3 @13": (64, 256, 3, 1, 1, 13),
    "fire9 64->256 3x3 @3 (64 in)": (64, 256, 3, 1, 1, 3),
    "vgg conv2 96->256 5x5 @37": (96, 256, 5, 1, 1, 37),
    "vgg conv3 256->512 3x3 @18": (256, 512, 3, 1, 1, 18),
}
RANK = 192
SWEEP = (16, 64, 128, 256)  # extra ranks on the first layer at batch 1
BATCHES = (1, 32)
CPU_METHODS = ("dense", "dense_cl", "four_stage", "fused", "fused_cl")
CUDA_METHODS = ("dense", "dense_fp16", "four_stage", "fused", "fused_fp16")


class Case:
    def __init__(self, c: int, n: int, k: int, stride: int, padding: int, h: int, rank: int,
                 batch: int, device: str):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, c, h, h, generator=gen).to(device)
        self.factors = [(torch.randn(*shape, generator=gen) / shape[-1] ** 0.5).to(device)
                        for shape in ((rank, c), (rank, k), (rank, k), (n, rank))]
        self.bias = torch.randn(n, generator=gen).to(device)
        self.weight = ops.cp_dense_weight(*self.factors)
        self.geometry = ((stride, stride), (padding, padding))
        self.tltorch = None if tltorch is None else tltorch.FactorizedConv.from_conv(
            nn.Conv2d(c, n, k, stride, padding), rank=rank, factorization="cp",
            implementation="factorized", decompose_weights=False).to(device)
        self.macs = {"dense": c * n * k * k,
                     "cp": rank * (c + 2 * k + n)}  # per output pixel

    def methods(self, device: str) -> dict:
        x, fs, b, w = self.x, self.factors, self.bias, self.weight
        stride, padding = self.geometry
        xcl = x.contiguous(memory_format=torch.channels_last)
        out = {"dense": lambda: F.conv2d(x, w, b, stride, padding),
               "four_stage": lambda: ops.cp_conv2d_reference(x, *fs, b, stride, padding),
               "fused": lambda: ops.cp_conv2d(x, *fs, b, stride, padding)}
        if self.tltorch is not None:
            out["tltorch"] = lambda: self.tltorch(x)
        if is_cuda(device):
            xh, bh, wh = x.half(), b.half(), w.half()
            fsh = [f.half() for f in fs]
            out["dense_fp16"] = lambda: F.conv2d(xh, wh, bh, stride, padding)
            out["fused_fp16"] = lambda: ops.cp_conv2d(xh, *fsh, bh, stride, padding)
        else:
            out["dense_cl"] = lambda: F.conv2d(xcl, w, b, stride, padding)
            out["fused_cl"] = lambda: ops.cp_conv2d(xcl, *fs, b, stride, padding)
        return out


def interleaved(fns: dict, budget: float) -> dict[str, float]:
    """Median seconds per method, timing one call of each in turn (ABAB...) for about
    ``budget`` seconds in all (at least 5 rounds)."""
    for fn in fns.values():  # warm-up: page faults, oneDNN primitive caches
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    while len(times[next(iter(fns))]) < 5 or time.perf_counter() - start < budget:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(label: str, layer: tuple, rank: int, batch: int, device: str, budget: float) -> dict:
    case = Case(*layer, rank, batch, device)
    fns = case.methods(device)
    with torch.no_grad():
        if is_cuda(device):
            times = {name: bench(fn, device) for name, fn in fns.items()}
        else:
            times = interleaved(fns, budget)
    c, n, k, _, _, h = layer
    row: dict = {"layer": label, "rank": rank, "batch": batch,
                 "flop_ratio": case.macs["dense"] / case.macs["cp"]}
    row.update({f"{name}_ms": 1e3 * t for name, t in times.items()})
    if is_cuda(device):
        row["fused_vs_dense"] = times["dense"] / times["fused"]
        row["fused_vs_four_stage"] = times["four_stage"] / times["fused"]
        row["fused_vs_tltorch"] = times["tltorch"] / times["fused"] if "tltorch" in times else None
        row["fused_fp16_vs_dense_fp16"] = times["dense_fp16"] / times["fused_fp16"]
    else:
        best_dense, best_fused = min(times["dense"], times["dense_cl"]), min(
            times["fused"], times["fused_cl"])
        row["fused_vs_dense"] = best_dense / best_fused
        row["fused_vs_four_stage"] = times["four_stage"] / best_fused
        row["fused_vs_tltorch"] = times["tltorch"] / best_fused if "tltorch" in times else None
        pixels = batch * ((h + 2 * layer[4] - k) // layer[3] + 1) ** 2
        row["fused_gmacs"] = pixels * case.macs["cp"] / best_fused / 1e9
        row["dense_gmacs"] = pixels * case.macs["dense"] / best_dense / 1e9
        row["fused_roof_pct"] = roof_percent(2e9 * row["fused_gmacs"], "fma")
        row["dense_roof_pct"] = roof_percent(2e9 * row["dense_gmacs"], "fma")
    return row


def notes(rows: list[dict], device: str) -> list[str]:
    if is_cuda(device):
        out = ["speedups are baseline time / fused time (higher is better); targets on a GPU: "
               "fused >= 1.3x dense cuDNN and >= 2x the four stages at the paper's rank-192 "
               "layers"]
    else:
        out = ["speedups are baseline time / fused time (higher is better), the best of NCHW "
               "and channels-last for each; target on the CPU: >= 1.5x dense for the rank-192 "
               "64->256 layer at 56x56 and 13x13, batch 1 and 32"]
    for r in rows:
        if r["rank"] == RANK and r["layer"].startswith(("64->256", "fire9 64->256 3x3 @13")):
            out.append(f"{r['layer']} b{r['batch']}: fused vs dense x"
                       f"{ratio_text(r['fused_vs_dense'])}, vs four stages x"
                       f"{ratio_text(r['fused_vs_four_stage'])}")
    return out


def columns(device: str) -> list[tuple[str, str, str]]:
    cols = [("layer", "layer", ""), ("rank", "rank", "d"), ("batch", "batch", "d"),
            ("flop_ratio", "flop ratio", ".2f")]
    methods = CUDA_METHODS if is_cuda(device) else CPU_METHODS
    cols += [(f"{m}_ms", f"{m} ms", ".3f") for m in methods]
    if tltorch is not None:
        cols.append(("tltorch_ms", "tltorch ms", ".3f"))
    cols += [("fused_vs_dense", "vs dense", ".2f"), ("fused_vs_four_stage", "vs 4-stage", ".2f")]
    if tltorch is not None:
        cols.append(("fused_vs_tltorch", "vs tltorch", ".2f"))
    if is_cuda(device):
        cols.append(("fused_fp16_vs_dense_fp16", "fp16 vs dense", ".2f"))
    else:
        cols += [("fused_gmacs", "fused GMAC/s", ".1f"), ("fused_roof_pct", "% roof", ".0f"),
                 ("dense_gmacs", "dense GMAC/s", ".1f"), ("dense_roof_pct", "% roof", ".0f")]
    return cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="the two target layers at rank 192 only, shorter timing")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    if device == "cpu":
        roofs()  # before anything is timed
    budget = 1.0 if args.quick else 3.0
    layers = list(LAYERS.items())[:2] if args.quick else list(LAYERS.items())
    rows = [measure(label, layer, RANK, batch, device, budget)
            for label, layer in layers for batch in BATCHES]
    if not args.quick:
        label, layer = next(iter(LAYERS.items()))
        rows += [measure(label, layer, rank, 1, device, budget) for rank in SWEEP]
    title = "cp_conv2d (fused) vs dense conv and the four-stage sequence"
    report("cp_conv2d", f"{title} ({device.upper()})", columns(device), rows, device,
           notes(rows, device))


if __name__ == "__main__":
    main()
