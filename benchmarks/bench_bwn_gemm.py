"""bwn_gemm (float activations x packed binary weights) versus torch.matmul with float weights.

float32: against x @ W.T in float32 ("% roof": its FLOP/s over the CPU's measured float32 FMA
roof; "bwn % roof": bwn_gemm's multiply-adds, counted as 2 FLOPs each, over the same roof;
"% lookup": for fewer than 8 rows, its MACs over the roof of its own table step);
bfloat16: against torch.matmul in bfloat16.
--device cuda: bwn_gemm with float32, float16 and bfloat16 activations against cuBLAS in the
same dtype (float32 with TF32 off); "x int8" compares the float16 bwn_gemm with torch._int_mm.
The target is the batch-1 GEMV of VGG-S fc6 (S3) against cuBLAS float16.
"""

from __future__ import annotations

import torch
from harness import (
    BASELINE_COLUMNS,
    CORE_SHAPES,
    Suite,
    baseline_fields,
    bench,
    cublas_baselines,
    gemm_main,
    median_seconds,
    ratio_text,
    roof_percent,
)

from emokernels import ops

SHAPES = {
    **CORE_SHAPES,
    "fc7 b1": (1, 4096, 4096),
    "fc7 b16": (16, 4096, 4096),
    "sweep 1024": (1024, 1024, 1024),
    "sweep 2048": (2048, 2048, 2048),
}
CUDA_SHAPES = {
    **CORE_SHAPES,
    "fc6 b4": (4, 4096, 18432),  # the largest batch of the GEMV kernel (M <= 4)
    "fc7 b1": (1, 4096, 4096),
    "fc7 b16": (16, 4096, 4096),
    "sweep 4096": (4096, 4096, 4096),
}
TARGET_SHAPE = "S3 fc6 b1"
CUDA_DTYPES = (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16))


def measure(label: str, m: int, n: int, k: int) -> dict:
    x, w = torch.randn(m, k), torch.randn(n, k)
    alpha = w.abs().mean(1)
    w_bits = ops.pack_bits(w)
    dense = (alpha[:, None] * torch.where(w >= 0, 1.0, -1.0)).T.contiguous()
    row = {"shape": label, "m": m, "n": n, "k": k}
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        if torch.ops.emokernels.cpu_kernel_path("bwn_gemm", str(dtype)[6:], m, n) == "portable":
            continue  # the scalar reference path (no AVX-512 BF16 here): minutes a shape
        xd, wd = x.to(dtype), dense.to(dtype)
        t_dense = median_seconds(lambda xd=xd, wd=wd: torch.matmul(xd, wd), repeats=10,
                                 min_time=0.3)
        t_bwn = median_seconds(lambda xd=xd: ops.bwn_gemm(xd, w_bits, alpha, k), repeats=10,
                               min_time=0.3)
        row[f"{tag}_dense_ms"] = 1e3 * t_dense
        row[f"{tag}_bwn_ms"] = 1e3 * t_bwn
        row[f"{tag}_speedup"] = t_dense / t_bwn
        row[f"{tag}_bwn_gmacs"] = m * n * k / t_bwn / 1e9
        if tag == "fp32":
            row["fp32_roof_pct"] = roof_percent(2 * m * n * k / t_dense, "fma")
            row["fp32_bwn_roof_pct"] = roof_percent(2 * m * n * k / t_bwn, "fma")
            if m < 8:  # the tables of each row (on AVX2 / AVX-512)
                row["fp32_bwn_lookup_pct"] = roof_percent(m * n * k / t_bwn, "lookup")
    row["weight_bytes_dense_fp32"] = n * k * 4
    row["weight_bytes_packed"] = w_bits.numel() * 4 + alpha.numel() * 4
    return row


def measure_cuda(label: str, m: int, n: int, k: int) -> dict:
    w = torch.randn(n, k, device="cuda")
    alpha, w_bits = w.abs().mean(1), ops.pack_bits(w)
    del w
    base = cublas_baselines(m, n, k)
    row = {"shape": label, "m": m, "n": n, "k": k, **baseline_fields(base)}
    times = {}
    for tag, dtype in CUDA_DTYPES:
        x = torch.randn(m, k, device="cuda", dtype=dtype)
        times[tag] = bench(lambda x=x: ops.bwn_gemm(x, w_bits, alpha, k), "cuda")
        row[f"bwn_{tag}_ms"] = 1e3 * times[tag]
        row[f"speedup_vs_{tag}"] = base[tag] / times[tag]
    row["speedup_vs_int8"] = None if base["int8"] is None else base["int8"] / times["fp16"]
    # A GEMV is bound by reading the weights: the bandwidth the packed ones are read at.
    row["weight_bytes_packed"] = w_bits.numel() * 4 + alpha.numel() * 4
    row["bwn_fp16_weight_gbs"] = row["weight_bytes_packed"] / times["fp16"] / 1e9
    return row


def cuda_notes(rows: list[dict]) -> list[str]:
    target = [r for r in rows if r["shape"] == TARGET_SHAPE]
    got = ratio_text(target[0]["speedup_vs_fp16"]) if target else "not measured"
    return [f"target: {TARGET_SHAPE} (batch-1 GEMV) bwn fp16 vs cuBLAS fp16: x fp16 = {got}"]


COLUMNS = [
    ("shape", "shape", ""), ("fp32_dense_ms", "fp32 ms", ".3f"),
    ("fp32_roof_pct", "% roof", ".0f"), ("fp32_bwn_ms", "bwn ms", ".3f"),
    ("fp32_bwn_gmacs", "bwn GMAC/s", ".0f"), ("fp32_bwn_roof_pct", "bwn % roof", ".0f"),
    ("fp32_bwn_lookup_pct", "% lookup", ".0f"),
    ("fp32_speedup", "x fp32", ".2f"),
    ("bf16_dense_ms", "bf16 ms", ".3f"), ("bf16_bwn_ms", "bwn16 ms", ".3f"),
    ("bf16_speedup", "x bf16", ".2f"),
]
CUDA_COLUMNS = [
    ("shape", "shape", ""), *BASELINE_COLUMNS,
    *((f"bwn_{tag}_ms", f"bwn {tag} ms", ".3f") for tag, _ in CUDA_DTYPES),
    ("speedup_vs_fp32", "x fp32", ".2f"), ("speedup_vs_fp16", "x fp16 (S3)", ".2f"),
    ("speedup_vs_bf16", "x bf16", ".2f"), ("speedup_vs_int8", "x int8", ".2f"),
    ("bwn_fp16_weight_gbs", "bwn16 W GB/s", ".0f"),
]

if __name__ == "__main__":
    gemm_main(
        "bwn_gemm", __doc__,
        cpu=Suite("bwn_gemm vs torch.matmul with dense weights", SHAPES, COLUMNS, measure),
        cuda=Suite("bwn_gemm vs cuBLAS with dense weights (fp32 no TF32, fp16, bf16, int8)",
                   CUDA_SHAPES, CUDA_COLUMNS, measure_cuda, cuda_notes))
