"""The ops' argument checks for fake tensors, one for one with csrc/ops/*_checks.h.

The fake kernels (``torch.compile``, ``torch.export``) and the real kernels must accept and
reject the same inputs: each function here mirrors the C++ check of the same name and returns
the output shape. ``torch._check`` keeps symbolic sizes symbolic.
"""

from __future__ import annotations

import torch

from ._words import words_for_bits

INT32_MAX = 2**31 - 1
PACKABLE = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
BWN_X = (torch.float32, torch.float16, torch.bfloat16)


def check_rank(t: torch.Tensor, rank: int, op: str, name: str) -> None:
    torch._check(t.dim() == rank, lambda: f"{op}: {name} must be {rank}-D, got shape "
                                          f"{tuple(t.shape)}")


def check_dtype(t: torch.Tensor, dtype: torch.dtype, op: str, name: str) -> None:
    torch._check(t.dtype == dtype, lambda: f"{op}: {name} must be {dtype}, got {t.dtype}")


def check_same_device(a: torch.Tensor, b: torch.Tensor, op: str) -> None:
    torch._check(a.device == b.device,
                 lambda: f"{op}: all tensors must be on one device, got {a.device} and {b.device}")


def check_packed_words(bits: torch.Tensor, k: int, op: str, name: str) -> None:
    torch._check(1 <= k <= INT32_MAX, lambda: f"{op}: k must be in [1, 2^31 - 1], got {k}")
    torch._check(bits.shape[1] == words_for_bits(k),
                 lambda: f"{op}: {name} has {bits.shape[1]} words per row but k = {k} needs "
                         f"ceil(k/32) = {words_for_bits(k)}")


def pack_bits_output_shape(x: torch.Tensor) -> tuple:
    torch._check(x.dim() >= 1, lambda: "pack_bits: x must have at least 1 dimension")
    torch._check(x.dtype in PACKABLE,
                 lambda: f"pack_bits: x must be float32, float64, float16 or bfloat16, got "
                         f"{x.dtype}")
    torch._check(x.shape[-1] >= 1, lambda: "pack_bits: the last dimension of x must be >= 1")
    return (*x.shape[:-1], words_for_bits(x.shape[-1]))


def xnor_gemm_output_shape(a: torch.Tensor, b: torch.Tensor, k: int,
                           op: str = "xnor_gemm") -> tuple:
    check_rank(a, 2, op, "a_bits")
    check_rank(b, 2, op, "b_bits")
    check_dtype(a, torch.int32, op, "a_bits")
    check_dtype(b, torch.int32, op, "b_bits")
    check_same_device(a, b, op)
    torch._check(a.shape[1] == b.shape[1],
                 lambda: f"{op}: a_bits and b_bits must have the same number of words per row")
    check_packed_words(a, k, op, "a_bits")
    return (a.shape[0], b.shape[0])


def xnor_gemm_scaled_output_shape(a, b, k, scale, bias, offset) -> tuple:
    op = "xnor_gemm_scaled"
    m, n = xnor_gemm_output_shape(a, b, k, op)
    for t, name in ((scale, "scale"), (bias, "bias")):
        if t is None:
            continue
        check_rank(t, 1, op, name)
        check_dtype(t, torch.float32, op, name)
        check_same_device(a, t, op)
        torch._check(t.shape[0] == n, lambda name=name: f"{op}: {name} must have N entries")
    if offset is not None:
        check_rank(offset, 2, op, "offset")
        check_dtype(offset, torch.int32, op, "offset")
        check_same_device(a, offset, op)
        torch._check(offset.shape[1] == n and offset.shape[0] >= 1
                     and m % offset.shape[0] == 0,
                     lambda: f"{op}: offset must be [P, N] with P dividing M")
    return (m, n)


def check_bwn_weights(x, w, alpha, k: int, op: str) -> None:
    check_rank(w, 2, op, "w_bits")
    check_rank(alpha, 1, op, "alpha")
    torch._check(x.dtype in BWN_X,
                 lambda: f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
    check_dtype(w, torch.int32, op, "w_bits")
    torch._check(alpha.dtype in PACKABLE,
                 lambda: f"{op}: alpha must be float32, float64, float16 or bfloat16")
    check_same_device(x, w, op)
    check_same_device(x, alpha, op)
    check_packed_words(w, k, op, "w_bits")
    torch._check(alpha.shape[0] == w.shape[0],
                 lambda: f"{op}: alpha has {alpha.shape[0]} entries but w_bits has "
                         f"{w.shape[0]} rows")


def bwn_gemm_output_shape(x, w, alpha, k: int) -> tuple:
    op = "bwn_gemm"
    check_rank(x, 2, op, "x")
    check_bwn_weights(x, w, alpha, k, op)
    torch._check(x.shape[1] == k, lambda: f"{op}: x has {x.shape[1]} columns but k = {k}")
    return (x.shape[0], w.shape[0])


def bwn_conv2d_output_shape(x, w, alpha, kernel_size, stride, dilation) -> tuple:
    op = "bwn_conv2d"
    check_rank(x, 4, op, "x")
    torch._check(len(kernel_size) == len(stride) == len(dilation) == 2,
                 lambda: f"{op}: kernel_size, stride and dilation must have 2 entries")
    torch._check(all(v >= 1 for v in (*kernel_size, *stride, *dilation)),
                 lambda: f"{op}: kernel_size, stride and dilation must be >= 1")
    b, h, w_, c = x.shape
    torch._check(c >= 1, lambda: f"{op}: x [B, H, W, C] must have C >= 1")
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    torch._check(h >= 1 and w_ >= 1 and dh * (kh - 1) < h and dw * (kw - 1) < w_,
                 lambda: f"{op}: input [B, H, W, C] = {tuple(x.shape)} is smaller than the "
                         "dilated kernel")
    k = kh * kw * c
    torch._check(k < 2**63, lambda: f"{op}: kh * kw * C overflows int64")
    check_bwn_weights(x, w, alpha, k, op)
    return (b, (h - dh * (kh - 1) - 1) // sh + 1, (w_ - dw * (kw - 1) - 1) // sw + 1, w.shape[0])


MAX_BUCKETS = 2**30
MAX_BLOCK = 256


def check_hashed_operands(x, buckets, seed: int, block: int, op: str, x_name: str) -> None:
    check_rank(x, 2, op, x_name)
    check_rank(buckets, 1, op, "buckets")
    check_dtype(x, torch.float32, op, x_name)
    check_dtype(buckets, torch.float32, op, "buckets")
    check_same_device(x, buckets, op)
    torch._check(1 <= buckets.shape[0] <= MAX_BUCKETS,
                 lambda: f"{op}: buckets must have between 1 and 2^30 entries, got "
                         f"{buckets.shape[0]}")
    torch._check(0 <= seed <= 2**32 - 1, lambda: f"{op}: seed must be in [0, 2^32 - 1], got {seed}")
    torch._check(1 <= block <= MAX_BLOCK and block & (block - 1) == 0,
                 lambda: f"{op}: block must be a power of two in [1, 256], got {block}")


def check_features(features: int, op: str, name: str) -> None:
    torch._check(1 <= features <= INT32_MAX,
                 lambda: f"{op}: {name} must be in [1, 2^31 - 1], got {features}")


def hashed_linear_output_shape(x, buckets, out_features: int, seed: int, block: int,
                               bias) -> tuple:
    op = "hashed_linear"
    check_hashed_operands(x, buckets, seed, block, op, "x")
    check_features(x.shape[1], op, "in_features (x.shape[1])")
    check_features(out_features, op, "out_features")
    if bias is not None:
        check_rank(bias, 1, op, "bias")
        check_dtype(bias, torch.float32, op, "bias")
        check_same_device(x, bias, op)
        torch._check(bias.shape[0] == out_features,
                     lambda: f"{op}: bias has {bias.shape[0]} entries but out_features = "
                             f"{out_features}")
    return (x.shape[0], out_features)


def check_hashed_linear_backward(grad, x, buckets, seed: int, block: int) -> None:
    op = "hashed_linear_backward"
    check_hashed_operands(x, buckets, seed, block, op, "x")
    check_rank(grad, 2, op, "grad")
    check_dtype(grad, torch.float32, op, "grad")
    check_same_device(x, grad, op)
    check_features(x.shape[1], op, "in_features (x.shape[1])")
    check_features(grad.shape[1], op, "out_features (grad.shape[1])")
    torch._check(grad.shape[0] == x.shape[0],
                 lambda: f"{op}: grad has {grad.shape[0]} rows but x has {x.shape[0]}")
