"""bwn_gemm (float activations x packed binary weights) versus torch.matmul with float weights.

float32: against x @ W.T in float32; bfloat16: against torch.matmul in bfloat16.
"""

from __future__ import annotations

import torch
from harness import CORE_SHAPES, gemm_main, median_seconds

from emokernels import ops

SHAPES = {
    **CORE_SHAPES,
    "fc7 b1": (1, 4096, 4096),
    "fc7 b16": (16, 4096, 4096),
    "sweep 1024": (1024, 1024, 1024),
    "sweep 2048": (2048, 2048, 2048),
}


def measure(label: str, m: int, n: int, k: int) -> dict:
    x, w = torch.randn(m, k), torch.randn(n, k)
    alpha = w.abs().mean(1)
    w_bits = ops.pack_bits(w)
    dense = (alpha[:, None] * torch.where(w >= 0, 1.0, -1.0)).T.contiguous()
    row = {"shape": label, "m": m, "n": n, "k": k}
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        xd, wd = x.to(dtype), dense.to(dtype)
        t_dense = median_seconds(lambda xd=xd, wd=wd: torch.matmul(xd, wd), repeats=10,
                                 min_time=0.3)
        t_bwn = median_seconds(lambda xd=xd: ops.bwn_gemm(xd, w_bits, alpha, k), repeats=10,
                               min_time=0.3)
        row[f"{tag}_dense_ms"] = 1e3 * t_dense
        row[f"{tag}_bwn_ms"] = 1e3 * t_bwn
        row[f"{tag}_speedup"] = t_dense / t_bwn
        row[f"{tag}_bwn_gmacs"] = m * n * k / t_bwn / 1e9
    row["weight_bytes_dense_fp32"] = n * k * 4
    row["weight_bytes_packed"] = w_bits.numel() * 4 + alpha.numel() * 4
    return row


COLUMNS = [
    ("shape", "shape", ""), ("fp32_dense_ms", "fp32 ms", ".3f"), ("fp32_bwn_ms", "bwn ms", ".3f"),
    ("fp32_bwn_gmacs", "bwn GMAC/s", ".0f"), ("fp32_speedup", "x fp32", ".2f"),
    ("bf16_dense_ms", "bf16 ms", ".3f"), ("bf16_bwn_ms", "bwn16 ms", ".3f"),
    ("bf16_speedup", "x bf16", ".2f"),
]

if __name__ == "__main__":
    gemm_main("bwn_gemm", "bwn_gemm vs torch.matmul with dense weights",
              __doc__, SHAPES, COLUMNS, measure)
