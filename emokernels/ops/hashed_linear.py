"""HashedNets' linear map: ``x @ W.T`` with the virtual weight ``W`` generated from buckets.

``W[i, j] = sign(i, j) * buckets[bucket(i, j)]`` for row ``i`` (output unit) and column ``j``
(input index), where ``h = xxh32(key, seed)`` of the 8-byte key (uint32 ``i``, uint32 ``j``,
little-endian), ``bucket = (h >> 1) % num_buckets`` and ``sign = -1`` iff ``h & 1``. The
kernels generate ``W`` on the fly: it is never stored, forward or backward.

Block hashing (``block = B > 1``, a power of two up to 256): columns ``B*r .. B*r + B-1`` form
run ``r``; one hash ``h`` of the key ``(i, r)`` gives the run's sign and first bucket
``b0 = (h >> 1) % num_buckets``, and column ``B*r + o`` reads bucket ``(b0 + o) % num_buckets``
with the run's sign. The kernels then read runs of consecutive buckets and hash ``B`` times
less; ``block = 1`` is exact hashing.
"""

from __future__ import annotations

import torch

from ._checks import check_hashed_linear_backward, hashed_linear_output_shape

_M32 = 0xFFFFFFFF
_PRIME2, _PRIME3, _PRIME4, _PRIME5 = 2246822519, 3266489917, 668265263, 374761393


def hashed_linear(x: torch.Tensor, buckets: torch.Tensor, out_features: int, seed: int = 0,
                  block: int = 1, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T (+ bias)`` with ``W [out_features, K]`` the virtual hashed matrix.

    Args:
        x: float32 ``[M, K]``, ``1 <= K <= 2^31 - 1``.
        buckets: float32 ``[num_buckets]``, ``1 <= num_buckets <= 2^30``.
        out_features: ``N``, in ``[1, 2^31 - 1]``.
        seed: the hash seed, a uint32.
        block: 1 (exact hashing) or a power of two up to 256 (block hashing, module docs).
        bias: optional float32 ``[N]``.

    Returns:
        float32 ``[M, N]``. Differentiable in ``x``, ``buckets`` and ``bias``; the bucket
        gradient is deterministic on the CPU, and on CUDA when
        ``torch.use_deterministic_algorithms(True)`` is set.
    """
    return torch.ops.emokernels.hashed_linear(x, buckets, out_features, seed, block, bias)


def _mul32(a: torch.Tensor, b: int) -> torch.Tensor:
    # (a * b) mod 2^32 without int64 overflow: b in 16-bit halves.
    lo = a * (b & 0xFFFF)
    hi = ((a * (b >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _rotl17(v: torch.Tensor) -> torch.Tensor:
    return ((v << 17) | (v >> 15)) & _M32


def xxh32_pairs(i: torch.Tensor, j: torch.Tensor, seed: int) -> torch.Tensor:
    """xxh32 of the 8-byte keys (uint32 ``i``, uint32 ``j``), little-endian, as int64 values in
    ``[0, 2^32)``; ``i`` and ``j`` are int64 tensors that broadcast."""
    h = (seed + _PRIME5 + 8) & _M32
    for word in (i, j):
        h = _mul32(_rotl17((h + _mul32(word, _PRIME3)) & _M32), _PRIME4)
    h = h ^ (h >> 15)
    h = _mul32(h, _PRIME2)
    h = h ^ (h >> 13)
    h = _mul32(h, _PRIME3)
    return h ^ (h >> 16)


def hashed_codes(rows: int | torch.Tensor, in_features: int, num_buckets: int, seed: int = 0,
                 block: int = 1, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The bucket index (int64) and sign (float32, +-1) of the virtual weights of ``rows`` (an
    int ``N``: rows ``0 .. N-1`` on ``device``; or a tensor of row indices, so that a large
    matrix can be hashed a few rows at a time), ``[len(rows), in_features]`` each: the slow
    reference the kernels are tested against."""
    if isinstance(rows, int):
        rows = torch.arange(rows, dtype=torch.int64, device=device)
    i = rows.to(torch.int64)[:, None]
    j = torch.arange(in_features, dtype=torch.int64, device=rows.device)[None, :]
    h = xxh32_pairs(i, j // block, seed)
    index = ((h >> 1) % num_buckets + j % block) % num_buckets
    sign = 1.0 - 2.0 * (h & 1).to(torch.float32)
    return index, sign


def dense_hashed_weight(buckets: torch.Tensor, out_features: int, in_features: int,
                        seed: int = 0, block: int = 1) -> torch.Tensor:
    """The virtual matrix ``W [out_features, in_features]`` materialized (for inspection and
    tests; differentiable in ``buckets``). Memory: the whole dense matrix."""
    index, sign = hashed_codes(out_features, in_features, buckets.shape[0], seed, block,
                               buckets.device)
    return buckets[index] * sign.to(buckets.dtype)


@torch.library.register_fake("emokernels::hashed_linear")
def _(x, buckets, out_features, seed, block, bias=None):
    return x.new_empty(hashed_linear_output_shape(x, buckets, out_features, seed, block, bias))


@torch.library.register_fake("emokernels::hashed_linear_backward")
def _(grad, x, buckets, seed, block, output_mask, deterministic):
    check_hashed_linear_backward(grad, x, buckets, seed, block)
    return (x.new_empty(x.shape if output_mask[0] else (0,)),
            x.new_empty(buckets.shape if output_mask[1] else (0,)))


def _setup_context(ctx, inputs, output) -> None:
    x, buckets, _, seed, block = inputs[:5]
    ctx.seed, ctx.block = seed, block
    ctx.save_for_backward(x, buckets)


def _backward(ctx, grad: torch.Tensor):
    x, buckets = ctx.saved_tensors
    need_x, need_buckets = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_x = grad_buckets = grad_bias = None
    if need_x or need_buckets:
        gx, gb = torch.ops.emokernels.hashed_linear_backward(
            grad.contiguous(), x, buckets, ctx.seed, ctx.block, [need_x, need_buckets],
            torch.are_deterministic_algorithms_enabled())
        grad_x = gx if need_x else None
        grad_buckets = gb if need_buckets else None
    # A bias left at its default is not among the inputs autograd sees.
    with_bias = len(ctx.needs_input_grad) == 6
    if with_bias and ctx.needs_input_grad[5]:
        grad_bias = grad.sum(0)
    return (grad_x, grad_buckets, None, None, None, grad_bias)[:len(ctx.needs_input_grad)]


torch.library.register_autograd("emokernels::hashed_linear", _backward,
                                setup_context=_setup_context)
