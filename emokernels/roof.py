"""The machine's own ceilings, measured, so that a kernel's speed can be stated as a fraction
of what this CPU can do (the same figure means the same on Intel and AMD)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Roof(NamedTuple):
    per_second: float  # binary MACs/s ("popcount"), float32 FLOP/s ("fma") or MACs/s ("lookup")
    loop: str  # the loop measured, and on how many threads


def cpu_roof(kind: str, seconds: float = 0.3) -> Roof:
    """Throughput of a register-only loop on all of torch's CPU threads at once.

    Args:
        kind: ``"popcount"``: the inner step of ``xnor_gemm`` on the path it takes on this CPU
            (XOR + popcount + add on a tile of accumulators, no loads), in binary MACs per
            second (bits XORed, counted and summed); ``"fma"``: float32 FLOPs per second of the
            widest vector FMA (a multiply-add counts 2); ``"lookup"``: multiply-free MACs per
            second of ``bwn_gemm``'s step for fewer than 8 rows of x on the path it takes here
            (a table permute picked by 3 or 4 weight bits + add + shift, one MAC per weight
            row and bit).
        seconds: about how long to measure (best of 3 runs), in ``(0, 60]``.
    """
    per_second, loop = torch.ops.emokernels.cpu_roof(kind, float(seconds))
    return Roof(per_second, loop)
