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


def pack_channels_output_shape(x, lower, upper) -> tuple:
    op = "pack_channels"
    check_rank(x, 4, op, "x")
    check_dtype(x, torch.float32, op, "x")
    torch._check(x.shape[1] >= 1, lambda: f"{op}: x [B, C, H, W] must have C >= 1")
    for t, name in ((lower, "lower"), (upper, "upper")):
        check_rank(t, 1, op, name)
        check_dtype(t, torch.float32, op, name)
        check_same_device(x, t, op)
        torch._check(t.shape[0] == x.shape[1],
                     lambda name=name: f"{op}: {name} must have one entry per channel of x")
    return (x.shape[0], x.shape[2], x.shape[3], words_for_bits(x.shape[1]))


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


def xnor_gemm_scaled_output_shape(a, b, k, scale, bias, offset, offset_index=None) -> tuple:
    op = "xnor_gemm_scaled"
    m, n = xnor_gemm_output_shape(a, b, k, op)
    for t, name in ((scale, "scale"), (bias, "bias")):
        if t is None:
            continue
        check_rank(t, 1, op, name)
        check_dtype(t, torch.float32, op, name)
        check_same_device(a, t, op)
        torch._check(t.shape[0] == n, lambda name=name: f"{op}: {name} must have N entries")
    check_xnor_offset(a, offset, offset_index, m, n, op)
    return (m, n)


def check_xnor_offset(a, offset, offset_index, m, n, op: str) -> None:
    """The shapes of an offset and its optional row index (the index's entries are checked by
    the kernels, which read them)."""
    if offset is None:
        torch._check(offset_index is None, lambda: f"{op}: offset_index needs an offset")
        return
    check_rank(offset, 2, op, "offset")
    check_dtype(offset, torch.int32, op, "offset")
    check_same_device(a, offset, op)
    torch._check(offset.shape[1] == n and offset.shape[0] >= 1,
                 lambda: f"{op}: offset must be [P, N]")
    if offset_index is None:
        torch._check(m % offset.shape[0] == 0,
                     lambda: f"{op}: offset must be [P, N] with P dividing M")
        return
    check_rank(offset_index, 1, op, "offset_index")
    check_dtype(offset_index, torch.int32, op, "offset_index")
    check_same_device(a, offset_index, op)
    torch._check(offset_index.shape[0] >= 1 and m % offset_index.shape[0] == 0,
                 lambda: f"{op}: offset_index must be [P] with P dividing M")


def xnor_gemm_sign_output_shape(a, b, k, bounds, offset, offset_index=None) -> tuple:
    op = "xnor_gemm_sign"
    m, n = xnor_gemm_output_shape(a, b, k, op)
    check_rank(bounds, 2, op, "bounds")
    check_dtype(bounds, torch.int32, op, "bounds")
    check_same_device(a, bounds, op)
    torch._check(bounds.shape[0] == 2 and bounds.shape[1] == n,
                 lambda: f"{op}: bounds must be [2, N] (lower, upper)")
    check_xnor_offset(a, offset, offset_index, m, n, op)
    return (m, words_for_bits(n))


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


CP_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def cp_conv2d_output_shape(x, u_in, k_v, k_h, u_out, bias, stride, padding,
                           op: str = "cp_conv2d", dtypes: tuple = (torch.float32,)) -> tuple:
    """Checks of ``cp_conv2d`` (and, with ``dtypes=CP_DTYPES``, of its Triton kernel):
    x ``[B, C, H, W]``, u_in ``[R, C]``, k_v ``[R, kh]``, k_h ``[R, kw]``, u_out ``[N, R]``,
    bias ``[N]``, all of one dtype and device -> ``(B, N, Ho, Wo)``."""
    check_rank(x, 4, op, "x")
    named = [(u_in, "u_in"), (k_v, "k_v"), (k_h, "k_h"), (u_out, "u_out")]
    for t, name in named:
        check_rank(t, 2, op, name)
    if bias is not None:
        check_rank(bias, 1, op, "bias")
        named.append((bias, "bias"))
    names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
    torch._check(x.dtype in dtypes, lambda: f"{op}: x must be one of {names}, got {x.dtype}")
    for t, name in named:
        torch._check(t.dtype == x.dtype,
                     lambda t=t, name=name: f"{op}: {name} must have x's dtype {x.dtype}, got "
                                            f"{t.dtype}")
        check_same_device(x, t, op)
    torch._check(len(stride) == 2 and len(padding) == 2,
                 lambda: f"{op}: stride and padding must have 2 entries")
    torch._check(all(1 <= s <= INT32_MAX for s in stride),
                 lambda: f"{op}: stride must be in [1, 2^31 - 1], got {list(stride)}")
    torch._check(all(0 <= p <= INT32_MAX for p in padding),
                 lambda: f"{op}: padding must be in [0, 2^31 - 1], got {list(padding)}")
    b, c, h, w = x.shape
    r, n = u_in.shape[0], u_out.shape[0]
    kh, kw = k_v.shape[1], k_h.shape[1]
    torch._check(b >= 1 and c >= 1 and h >= 1 and w >= 1,
                 lambda: f"{op}: x [B, C, H, W] must be non-empty, got {tuple(x.shape)}")
    torch._check(r >= 1 and n >= 1 and kh >= 1 and kw >= 1,
                 lambda: f"{op}: the factors must be non-empty (rank, out channels, kernel)")
    torch._check(u_in.shape[1] == c,
                 lambda: f"{op}: u_in is [R, {u_in.shape[1]}] but x has {c} channels")
    torch._check(k_v.shape[0] == r and k_h.shape[0] == r and u_out.shape[1] == r,
                 lambda: f"{op}: the factors disagree on the rank: u_in {tuple(u_in.shape)}, "
                         f"k_v {tuple(k_v.shape)}, k_h {tuple(k_h.shape)}, u_out "
                         f"{tuple(u_out.shape)}")
    torch._check(bias is None or bias.shape[0] == n,
                 lambda: f"{op}: bias has {bias.shape[0]} entries but u_out has {n} rows")
    (sh, sw), (ph, pw) = stride, padding
    torch._check(h + 2 * ph <= INT32_MAX and w + 2 * pw <= INT32_MAX,
                 lambda: f"{op}: the padded image exceeds 2^31 - 1 rows or columns")
    torch._check(kh <= h + 2 * ph and kw <= w + 2 * pw,
                 lambda: f"{op}: the {kh}x{kw} kernel does not fit the padded "
                         f"{h + 2 * ph}x{w + 2 * pw} image")
    return (b, n, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
