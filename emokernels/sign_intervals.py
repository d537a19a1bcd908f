"""Where the sign of a monotone chain of per-channel modules is +1: one interval per channel.

The chain is evaluated as the model evaluates it (the same modules on float32 values), on
candidate inputs a binary search picks, so the interval is exact for whatever rounding those
modules do. Inputs are ordered integer keys: dots themselves, or float32 values through the
order-preserving map of their bit patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Keys of -2^64 and 2^64, the float32 values searched: a chain overflowing to inf in the middle
# (a BatchNorm scale > 1, then a zero scale: inf * 0 = NaN) would not be monotone near FLT_MAX.
FLOAT_KEY_MIN, FLOAT_KEY_MAX = -1 - 0x5F800000, 0x5F800000

Positive = Callable[[torch.Tensor], torch.Tensor]


class NotMonotone(ValueError):
    """The sign of a chain of modules is not one interval of its input (e.g. it overflows to
    inf, then multiplies by 0): the chain cannot be folded exactly."""


def check_modules(modules: Sequence[nn.Module], tensors: dict[str, torch.Tensor | None]) -> None:
    """A ``ValueError`` for non-finite values (``tensors``, BatchNorm parameters and
    statistics) or a negative running variance: the chain would not be monotone."""
    named = dict(tensors)
    for i, m in enumerate(modules):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if (m.running_var < 0).any():
                raise ValueError("optimize_for_inference: a BatchNorm has a negative running_var")
            named.update({f"{type(m).__name__}[{i}].{k}": getattr(m, k)
                          for k in ("weight", "bias", "running_mean", "running_var")})
    for name, t in named.items():
        if t is not None and not torch.isfinite(t).all():
            raise ValueError(f"optimize_for_inference: {name} holds non-finite values")


def apply_pointwise(modules: Sequence[nn.Module], y: torch.Tensor) -> torch.Tensor:
    """``y`` float32 ``[S, C]`` through per-channel modules (BatchNorm2d sees ``[S, C, 1, 1]``)."""
    for m in modules:
        y = m(y[:, :, None, None]).flatten(1) if isinstance(m, nn.BatchNorm2d) else m(y)
    return y


def dot_interval(alpha: torch.Tensor, bias: torch.Tensor | None, modules: Sequence[nn.Module],
                 reach: int) -> torch.Tensor:
    """int32 ``[2, C]``: the dots ``s`` in ``[-reach, reach]`` where
    ``modules(float(s) * alpha + bias) >= 0``, as (lower, upper) bounds (see
    ``ops.xnor_gemm_sign``)."""

    def positive(dots: torch.Tensor) -> torch.Tensor:
        y = dots.to(torch.float32) * alpha  # the XNOR layers' epilogue: multiply, then add
        return apply_pointwise(modules, y if bias is None else y + bias) >= 0

    at_low, at_high, last, first = _bisect(positive, -reach, reach, alpha.shape[0], alpha.device)
    lower = torch.where(at_low, INT32_MIN, first)
    upper = torch.where(at_low, last, INT32_MAX)
    lower = torch.where(at_low == at_high, torch.where(at_low, INT32_MIN, 1), lower)
    upper = torch.where(at_low == at_high, torch.where(at_low, INT32_MAX, 0), upper)
    bounds = torch.stack([lower, upper])
    _check(positive, bounds, -reach, reach)
    return bounds.to(torch.int32)


def value_interval(modules: Sequence[nn.Module], channels: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``(lower [C], upper [C])``: the values ``y``, ``|y| <= 2^64``, where
    ``modules(y) >= 0`` (see ``ops.pack_channels``); an interval reaching an end of that range
    is unbounded on that side."""

    def positive(keys: torch.Tensor) -> torch.Tensor:
        return apply_pointwise(modules, key_to_float(keys)) >= 0

    at_low, at_high, last, first = _bisect(positive, FLOAT_KEY_MIN, FLOAT_KEY_MAX, channels,
                                           device)
    below, above = FLOAT_KEY_MIN - 1, FLOAT_KEY_MAX + 1  # stand for -inf and inf
    lower = torch.where(at_low, below, first)
    upper = torch.where(at_low, last, above)
    lower = torch.where(at_low == at_high, torch.where(at_low, below, above), lower)
    upper = torch.where(at_low == at_high, torch.where(at_low, above, below), upper)
    _check(positive, torch.stack([lower, upper]), FLOAT_KEY_MIN, FLOAT_KEY_MAX)
    inf = torch.tensor(float("inf"), device=device)
    as_float = lambda keys: torch.where(keys == below, -inf, torch.where(  # noqa: E731
        keys == above, inf, key_to_float(keys)))
    return as_float(lower), as_float(upper)


def key_to_float(keys: torch.Tensor) -> torch.Tensor:
    """float32 of int64 order keys: ``k >= 0`` are the bit patterns of +0.0 .. +inf, ``k < 0``
    those of -0.0 (``-1``) .. -inf."""
    k = keys.to(torch.int32)
    return torch.where(k < 0, k ^ 0x7FFFFFFF, k).view(torch.float32)


def _bisect(positive: Positive, low: int, high: int, n: int, device: torch.device):
    """Per channel, ``positive`` at ``low`` and ``high`` and the last key with the value it
    has at ``low`` and the first after it (bool ``[n]`` twice, int64 ``[n]`` twice)."""
    with torch.no_grad():
        lo = torch.full((1, n), low, dtype=torch.int64, device=device)
        hi = torch.full((1, n), high, dtype=torch.int64, device=device)
        at_low, at_high = positive(lo)[0], positive(hi)[0]
        while bool((hi - lo > 1).any()):
            mid = (lo + hi) // 2
            same = positive(mid) == at_low
            lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
    return at_low, at_high, lo[0], hi[0]


def _check(positive: Positive, bounds: torch.Tensor, low: int, high: int) -> None:
    """The intervals reproduce ``positive`` on a grid of keys and on both sides of every
    boundary, or :class:`NotMonotone`."""
    n = bounds.shape[1]
    grid = torch.linspace(low, high, min(high - low + 1, 257), dtype=torch.float64)
    edges = bounds.clamp(low, high)
    keys = torch.cat([grid.round().to(torch.int64)[:, None].expand(-1, n).to(bounds.device),
                      (edges - 1).clamp(min=low), edges, (edges + 1).clamp(max=high)])
    with torch.no_grad():
        if not torch.equal(positive(keys), (bounds[0] <= keys) & (keys <= bounds[1])):
            raise NotMonotone("the modules between two binary layers are not monotone")
