"""xnor_gemm versus float32 torch.matmul and int8 torch._int_mm on the same shapes.

Binary MACs per second = M*N*K / time; "% roof" is that over the CPU's own popcount roof (the
kernel's inner step without loads, measured right before and after the kernel's timing: "roof
T"), "fp32 % roof" the float GEMM's FLOP/s over the CPU's FMA roof measured the same way. The
packed operands are prepared outside the timed region (weights are packed once; activations'
packing is timed separately as pack_ms).
--device cuda: against cuBLAS float32 (TF32 off), float16, bfloat16 and int8 on the GPU;
"x <tag>" is the cuBLAS time over the xnor_gemm time. Targets at large shapes: x int8 >= 2,
x fp16 >= 4.
"""

from __future__ import annotations

import time

import torch
from harness import (
    BASELINE_COLUMNS,
    CORE_SHAPES,
    CUBLAS_TAGS,
    Suite,
    baseline_fields,
    bench,
    cublas_baselines,
    gemm_main,
    median_seconds,
    ratio_text,
    roof_percent,
    timed_with_roof,
)

from emokernels import ops

SHAPES = {
    **CORE_SHAPES,
    "sweep 512": (512, 512, 512),
    "sweep 1024": (1024, 1024, 1024),
    "sweep 2048": (2048, 2048, 2048),
    "sweep 4096": (4096, 4096, 4096),
}
CUDA_SHAPES = {
    **CORE_SHAPES,
    "sweep 4096": (4096, 4096, 4096),
    "sweep 8192": (8192, 8192, 8192),
    "sweep 16384": (16384, 16384, 16384),
}
# The GPU targets (speedup over cuBLAS) at the large square shapes.
TARGETS = {"int8": 2.0, "fp16": 4.0}


def int8_mm_seconds(m: int, n: int, k: int) -> float | None:
    a = torch.randint(-127, 127, (m, k), dtype=torch.int8)
    b = torch.randint(-127, 127, (k, n), dtype=torch.int8)
    try:
        first = time.perf_counter()
        torch._int_mm(a, b)
        first = time.perf_counter() - first
    except RuntimeError:
        return None  # shape or platform not supported by this torch build
    if first > 1.0:  # a CPU without int8 dot-product instructions: minutes for the repeats
        return first
    return median_seconds(lambda: torch._int_mm(a, b), repeats=10, min_time=0.3)


def measure(label: str, m: int, n: int, k: int) -> dict:
    a, b = torch.randn(m, k), torch.randn(n, k)
    a_bits, b_bits = ops.pack_bits(a), ops.pack_bits(b)
    t_xnor, popcount_roof = timed_with_roof(lambda: ops.xnor_gemm(a_bits, b_bits, k), "popcount",
                                            repeats=20)
    t_pack = median_seconds(lambda: ops.pack_bits(a), repeats=20, min_time=0.2)
    bt = b.T.contiguous()
    t_fp32, fma_roof = timed_with_roof(lambda: torch.matmul(a, bt), "fma")
    t_int8 = int8_mm_seconds(m, n, k)
    macs = m * n * k
    return {
        "shape": label, "m": m, "n": n, "k": k,
        "fp32_ms": 1e3 * t_fp32, "int8_ms": None if t_int8 is None else 1e3 * t_int8,
        "xnor_ms": 1e3 * t_xnor, "pack_ms": 1e3 * t_pack,
        "xnor_tmacs": macs / t_xnor / 1e12, "fp32_gflops": 2 * macs / t_fp32 / 1e9,
        "popcount_roof_tmacs": popcount_roof / 1e12, "fma_roof_gflops": fma_roof / 1e9,
        "xnor_roof_pct": roof_percent(macs / t_xnor, "popcount", popcount_roof),
        "fp32_roof_pct": roof_percent(2 * macs / t_fp32, "fma", fma_roof),
        "speedup_vs_fp32": t_fp32 / t_xnor,
        "speedup_vs_int8": None if t_int8 is None else t_int8 / t_xnor,
        "speedup_vs_fp32_with_pack": t_fp32 / (t_xnor + t_pack),
    }


def measure_cuda(label: str, m: int, n: int, k: int) -> dict:
    a, b = torch.randn(m, k, device="cuda"), torch.randn(n, k, device="cuda")
    a_bits, b_bits = ops.pack_bits(a), ops.pack_bits(b)
    t_xnor = bench(lambda: ops.xnor_gemm(a_bits, b_bits, k), "cuda")
    t_pack = bench(lambda: ops.pack_bits(a), "cuda")
    base = cublas_baselines(m, n, k)
    row = {"shape": label, "m": m, "n": n, "k": k, **baseline_fields(base),
           "xnor_ms": 1e3 * t_xnor, "pack_ms": 1e3 * t_pack,
           "xnor_tmacs": m * n * k / t_xnor / 1e12}
    for tag in CUBLAS_TAGS:
        t = base[tag]
        row[f"speedup_vs_{tag}"] = None if t is None else t / t_xnor
        row[f"speedup_vs_{tag}_with_pack"] = None if t is None else t / (t_xnor + t_pack)
    return row


def cuda_notes(rows: list[dict]) -> list[str]:
    """The targets, and where the largest shape measured stands against them."""
    big = max(rows, key=lambda r: r["m"] * r["n"] * r["k"])
    got = ", ".join(f"x {tag} = {ratio_text(big[f'speedup_vs_{tag}'])}" for tag in TARGETS)
    goal = ", ".join(f"x {tag} >= {v:g}" for tag, v in TARGETS.items())
    return [f"targets at large shapes: {goal}; at {big['shape']}: {got}"]


COLUMNS = [
    ("shape", "shape", ""), ("fp32_ms", "fp32 ms", ".3f"), ("int8_ms", "int8 ms", ".3f"),
    ("xnor_ms", "xnor ms", ".3f"), ("pack_ms", "pack A ms", ".3f"),
    ("xnor_tmacs", "T bMAC/s", ".2f"), ("popcount_roof_tmacs", "roof T", ".2f"),
    ("xnor_roof_pct", "% roof", ".0f"),
    ("fp32_gflops", "fp32 GF/s", ".0f"), ("fp32_roof_pct", "fp32 % roof", ".0f"),
    ("speedup_vs_fp32", "x fp32", ".1f"), ("speedup_vs_int8", "x int8", ".1f"),
    ("speedup_vs_fp32_with_pack", "x fp32+pk", ".1f"),
]
CUDA_COLUMNS = [
    ("shape", "shape", ""), *BASELINE_COLUMNS, ("xnor_ms", "xnor ms", ".3f"),
    ("pack_ms", "pack A ms", ".3f"), ("xnor_tmacs", "T bMAC/s", ".1f"),
    ("speedup_vs_fp32", "x fp32", ".2f"), ("speedup_vs_bf16", "x bf16", ".2f"),
    *((f"speedup_vs_{tag}", f"x {tag} >={goal:g}", ".2f") for tag, goal in TARGETS.items()),
]

if __name__ == "__main__":
    gemm_main(
        "xnor_gemm", __doc__,
        cpu=Suite("xnor_gemm vs torch.matmul (fp32) and torch._int_mm (int8)", SHAPES, COLUMNS,
                  measure),
        cuda=Suite("xnor_gemm vs cuBLAS fp32 (no TF32), fp16, bf16 and int8", CUDA_SHAPES,
                   CUDA_COLUMNS, measure_cuda, cuda_notes))
