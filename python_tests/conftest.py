import contextlib
import functools
import os

import pytest
import torch

import emokernels  # noqa: F401

from . import simd_emulation

_ISAS = {"avx512": 2, "avx2": 1, "portable": 0}
EMULATED = "avx512-emulated"


def supported_isas() -> list[str]:
    """The SIMD paths this CPU runs natively, and the AVX-512 path emulated where the CPU lacks
    it (SIMDe installed), so that every path is tested on every machine."""
    best = _ISAS[torch.ops.emokernels.cpu_isa()] if "EMOKERNELS_CPU_ISA" not in os.environ else 2
    native = [name for name, rank in _ISAS.items() if rank <= best]
    return native if "avx512" in native or not simd_emulation.available() else [EMULATED, *native]


@functools.cache
def emulated_ops():
    return simd_emulation.load()


@contextlib.contextmanager
def forced_isa(name: str):
    """Runs the block on one CPU path: every ``torch.ops.emokernels`` op (and so every
    ``emokernels.ops`` wrapper and layer) uses it."""
    with pytest.MonkeyPatch.context() as patch:
        if name == EMULATED:
            patch.setattr(torch.ops, "emokernels", emulated_ops())
            name = "avx512"
        patch.setenv("EMOKERNELS_CPU_ISA", name)
        yield


@pytest.fixture(params=supported_isas())
def isa(request):
    """Runs the test once per SIMD path (see :func:`supported_isas`)."""
    with forced_isa(request.param):
        yield request.param


def devices() -> list:
    """CPU always; CUDA when present and the extension was built with it (marked `cuda`)."""
    out = ["cpu"]
    if torch.cuda.is_available() and torch.ops.emokernels.cuda_compiled():
        out.append(pytest.param("cuda", marks=pytest.mark.cuda))
    return out


def signs(x: torch.Tensor) -> torch.Tensor:
    """The reference sign: +1 where x >= 0, else -1, as float64."""
    return torch.where(x >= 0, 1.0, -1.0).double()


def with_arg(args: list, index: int, value) -> list:
    """``args`` with argument ``index`` replaced by ``value`` (a bad-input case)."""
    return [value if i == index else a for i, a in enumerate(args)]


def random_offset(rows, m: int, n: int, high: int):
    """A fused XNOR GEMM's offset: ``(offset, offset_index, full)`` for rows None (none), 1,
    "m" (a row each) or "indexed" (a table of 3 rows picked by a random index of m rows);
    ``full`` is the [P, n] offset the op must add."""
    if rows is None:
        return None, None, None
    if rows == "indexed":
        table = torch.randint(-high, high, (3, n), dtype=torch.int32)
        index = torch.randint(0, 3, (m,), dtype=torch.int32)
        return table, index, table[index.long()]
    offset = torch.randint(-high, high, (m if rows == "m" else rows, n), dtype=torch.int32)
    return offset, None, offset
