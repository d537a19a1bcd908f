import os

import pytest
import torch

import emokernels  # noqa: F401

_ISAS = {"avx512": 2, "avx2": 1, "portable": 0}


def supported_isas() -> list[str]:
    best = _ISAS[torch.ops.emokernels.cpu_isa()] if "EMOKERNELS_CPU_ISA" not in os.environ else 2
    return [name for name, rank in _ISAS.items() if rank <= best]


@pytest.fixture(params=supported_isas())
def isa(request, monkeypatch):
    """Runs the test once per SIMD path this CPU supports."""
    monkeypatch.setenv("EMOKERNELS_CPU_ISA", request.param)
    return request.param


def devices() -> list:
    """CPU always; CUDA when present and the extension was built with it (marked `cuda`)."""
    out = ["cpu"]
    if torch.cuda.is_available() and torch.ops.emokernels.cuda_compiled():
        out.append(pytest.param("cuda", marks=pytest.mark.cuda))
    return out


def signs(x: torch.Tensor) -> torch.Tensor:
    """The reference sign: +1 where x >= 0, else -1, as float64."""
    return torch.where(x >= 0, 1.0, -1.0).double()
