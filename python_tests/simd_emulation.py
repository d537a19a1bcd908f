"""The test-only build of the CPU kernels with every SIMD intrinsic emulated in portable C++
(SIMDe), so a CPU without AVX-512 runs the AVX-512 paths. Its ops are
``torch.ops.emokernels_emu.*``; the build is cached under build/emulated."""

from __future__ import annotations

import glob
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def available() -> bool:
    """Whether the SIMDe headers are installed (the ``test`` extra brings them)."""
    try:
        import simde_py  # noqa: F401
    except ImportError:
        return False
    return True


def load() -> object:
    """Builds (once) and loads the emulated kernels; returns ``torch.ops.emokernels_emu``."""
    import simde_py
    from torch.utils.cpp_extension import load as load_extension

    csrc = os.path.join(ROOT, "csrc")
    sources = [os.path.join(csrc, "registration.cpp"),
               os.path.join(csrc, "common", "cpu_features.cpp"),
               *sorted(glob.glob(os.path.join(csrc, "cpu", "*.cpp")))]
    build = os.path.join(ROOT, "build", "emulated")
    os.makedirs(build, exist_ok=True)
    load_extension(
        name="emokernels_emu", sources=sources, build_directory=build, is_python_module=False,
        extra_cflags=["-O1", "-std=c++20", "-fopenmp", "-ffp-contract=off",
                      "-DEMOKERNELS_EMULATE_SIMD", "-DEMOKERNELS_NAMESPACE=emokernels_emu",
                      f"-I{simde_py.get_include()}", "-Wno-maybe-uninitialized"],
        extra_ldflags=["-fopenmp"], verbose=False)
    return torch.ops.emokernels_emu
