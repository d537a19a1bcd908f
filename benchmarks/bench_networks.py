"""Whole networks, 224x224: frozen BWN and XNOR-Net VGG-S, and the XNOR net after
``emokernels.optimize_for_inference`` (binary between layers), against the float VGG-S, at
batch 1 and 32, timed alternately with the float model in the same loop (the speedup is the
median of the per-round ratios, brackets its lowest and highest round). Each timed forward
follows an untimed one of the same model, as when a model serves request after request
(VGG-S's float weights, 377 MB, never stay in cache; a binary net's 13 MB can). "cold": the
same, each timed forward right after the other model's, its weights evicted by it.

Where the time goes: each binary network's forward three times more with a timer around every
leaf module, summed by kind (binary layers, the float first conv, pooling, BatchNorm, the
rest), the median of the three;
"bin % roof": the binary layers' MACs over their time, as a percentage of the CPU's popcount
roof (XNOR) or float32 FMA roof counted in multiply-adds (BWN).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from harness import report, roof_percent, roofs
from torch import nn

import emokernels as ek
from emokernels.models import vgg_s
from emokernels.nn.packed_chain import PackedMaxPool2d, PackedXnorConv2d
from emokernels.timing import compare_seconds

# The project's end-to-end targets: speedup over float VGG-S by (method, batch).
TARGETS = {("xnor", 1): 10.0, ("xnor", 32): 5.0, ("xnor fused", 1): 10.0,
           ("xnor fused", 32): 5.0, ("bwn", 1): 4.0, ("bwn", 32): 3.0}
KINDS = ("binary layers", "float conv / linear", "pooling", "batchnorm", "other")


def build(method: str | None) -> nn.Module:
    """Float VGG-S (None), frozen "bwn" / "xnor", or "xnor fused" (optimized for inference)."""
    fused = method == "xnor fused"
    method = "xnor" if fused else method
    model = vgg_s(8, 224, binary_blocks=method is not None, binary_inputs=method == "xnor")
    if method is not None:
        model = ek.freeze(ek.convert(model, method))
    model.eval()
    return ek.optimize_for_inference(model, torch.randn(1, 3, 224, 224)) if fused else model


def _kind(module: nn.Module) -> str:
    if isinstance(module, (ek.BinaryConv2d, ek.BinaryLinear, PackedXnorConv2d)):
        return "binary layers"  # the XNOR layers subclass the BWN ones
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return "float conv / linear"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, PackedMaxPool2d)):
        return "pooling"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    return "other"


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds of a conv / linear layer's forward that gave ``out``."""
    if isinstance(module, PackedXnorConv2d):
        kh, kw = module.kernel_size
        pixels = out.shape[:3].numel() if module.bounds is not None else (
            out.numel() // module.out_channels)
        return pixels * module.out_channels * module.in_channels * kh * kw
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() * module.in_channels // module.groups * kh * kw
    return out.numel() * module.in_features


def breakdown(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, float], int]:
    """Seconds of one forward by module kind (leaf modules), and the binary layers' MACs."""
    seconds: dict[str, float] = defaultdict(float)
    macs = 0
    started: dict[int, float] = {}

    def before(module, _):
        started[id(module)] = time.perf_counter()

    def after(module, _, out):
        nonlocal macs
        kind = _kind(module)
        seconds[kind] += time.perf_counter() - started.pop(id(module))
        if kind == "binary layers":
            macs += _macs(module, out)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [h for m in leaves for h in (m.register_forward_pre_hook(before),
                                           m.register_forward_hook(after))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return dict(seconds), macs


def run(batches: list[int], rounds: int) -> list[dict]:
    torch.manual_seed(0)
    float_model = build(None)
    rows = []
    for method in ("bwn", "xnor", "xnor fused"):
        model = build(method)
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224)

            def infer(m: nn.Module = model, x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    m(x)

            def infer_float(x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    float_model(x)

            c = compare_seconds(infer_float, infer, rounds=rounds, warmup=1, settle=1)
            cold = compare_seconds(infer_float, infer, rounds=rounds, warmup=1)
            runs = [breakdown(model, x) for _ in range(3)]
            macs = runs[0][1]
            parts = {k: statistics.median(r[0].get(k, 0.0) for r in runs) for k in KINDS}
            total = sum(parts.values())
            binary_s = parts.get("binary layers", 0.0)
            kind = "fma" if method == "bwn" else "popcount"
            row = {"network": f"{method} VGG-S", "batch": batch,
                   "float_ms": 1e3 * statistics.median(c.baseline_s),
                   "ms": 1e3 * statistics.median(c.candidate_s),
                   "speedup": c.speedup, "speedup_spread": list(c.spread),
                   "cold_ms": 1e3 * statistics.median(cold.candidate_s),
                   "cold_speedup": cold.speedup,
                   "decided": c.decided, "target": TARGETS[(method, batch)]
                   if (method, batch) in TARGETS else None,
                   "binary_roof_pct": roof_percent(macs * (1 if kind == "popcount" else 2)
                                                   / binary_s, kind) if binary_s else None}
            row.update({f"{k} %": 100 * parts.get(k, 0.0) / total for k in KINDS})
            row["spread"] = f"{c.spread[0]:.2f}-{c.spread[1]:.2f}{'' if c.decided else ' ?'}"
            rows.append(row)
    return rows


COLUMNS = [("network", "network", ""), ("batch", "batch", "d"), ("float_ms", "float ms", ".1f"),
           ("ms", "ms", ".1f"), ("speedup", "speedup", ".2f"), ("spread", "spread", ""),
           ("cold_ms", "cold ms", ".1f"), ("cold_speedup", "cold x", ".2f"),
           ("target", "target", ".0f"), ("binary_roof_pct", "bin % roof", ".0f"),
           *((f"{k} %", f"{k} %", ".0f") for k in KINDS)]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=6, help="alternate timing rounds")
    args = parser.parse_args()
    roofs()  # before anything is timed
    report("networks", "VGG-S 224x224, frozen binary nets vs float, inference", COLUMNS,
           run(args.batches, args.rounds),
           notes=["targets: XNOR >= 10x float at batch 1 and >= 5x at batch 32; BWN >= 4x "
                  "and >= 3x", "xnor fused: the XNOR net after optimize_for_inference (equal "
                  "outputs: binary between layers)",
                  "% columns: share of a forward's time by module kind (median of 3)"])
