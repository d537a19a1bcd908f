"""Test-only builds of CUDA kernel sources as plain C++ under the CPU emulation of CUDA
(``python_tests/cuda_emulation/cuda_emulation.h``), so CI without a GPU runs the CUDA kernels
against references.

:func:`build` compiles the emulation harness plus the given C++ sources (which include
``cuda_emulation.h`` before any kernel header and register a ``TORCH_LIBRARY(<name>, m)``) into
a torch extension and returns ``torch.ops.<name>``. :func:`load_test_ops` is the harness's own
test extension, ``torch.ops.emokernels_cuda_emu_test``. Builds are cached per process and, by
ninja, on disk under ``build/cuda_emulation_*``.

At run time ``EMOKERNELS_EMU_SEED`` (an unsigned integer, read at every launch) seeds the random
order in which a block's threads run; :data:`SEED_ENV` names it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "python_tests", "cuda_emulation")
CSRC = os.path.join(ROOT, "csrc")
SEED_ENV = "EMOKERNELS_EMU_SEED"
TEST_OPS = "emokernels_cuda_emu_test"


def build(name: str, sources: Sequence[str], include_dirs: Sequence[str] = (),
          extra_cflags: Sequence[str] = (), build_directory: str | None = None) -> object:
    """Builds (once per process) the harness plus ``sources`` as the extension ``name`` and
    returns ``torch.ops.<name>`` (``name`` must be the sources' ``TORCH_LIBRARY`` namespace).

    Include paths: the harness folder and ``csrc/`` always, then ``include_dirs``. The default
    build folder is ``build/cuda_emulation_<name>``; each extension needs its own.
    """
    build_directory = build_directory or os.path.join(ROOT, "build", f"cuda_emulation_{name}")
    return _build(name, tuple(os.path.abspath(s) for s in sources),
                  tuple(os.path.abspath(d) for d in include_dirs), tuple(extra_cflags),
                  os.path.abspath(build_directory))


@functools.cache
def _build(name: str, sources: tuple[str, ...], include_dirs: tuple[str, ...],
           extra_cflags: tuple[str, ...], build_directory: str) -> object:
    from torch.utils.cpp_extension import load

    os.makedirs(build_directory, exist_ok=True)
    # -O1: the kernels run per emulated thread, unoptimized they are slow; more optimization
    # mostly costs compile time.
    flags = ["-O1", "-std=c++20", f"-I{HARNESS}", f"-I{CSRC}",
             *(f"-I{d}" for d in include_dirs), *extra_cflags]
    load(name=name, sources=[os.path.join(HARNESS, "cuda_emulation.cpp"), *sources],
         build_directory=build_directory, is_python_module=False, extra_cflags=flags,
         verbose=False)
    return getattr(torch.ops, name)


def load_test_ops() -> object:
    """The harness's test kernels (``cuda_emulation/test_kernels.cuh``) as
    ``torch.ops.emokernels_cuda_emu_test``."""
    return build(TEST_OPS, [os.path.join(HARNESS, "test_ops.cpp")],
                 build_directory=os.path.join(ROOT, "build", "cuda_emulation_test"))


CUDA_OPS = "emokernels_cuda_emu"


def load_cuda_ops() -> object:
    """The package's own CUDA launchers and kernels (``csrc/cuda``) run on CPU tensors, with
    the op schemas of ``csrc/registration.cpp``, as ``torch.ops.emokernels_cuda_emu``."""
    return build(CUDA_OPS, [os.path.join(HARNESS, "cuda_kernels.cpp"),
                            os.path.join(CSRC, "registration.cpp"),
                            os.path.join(CSRC, "common", "cpu_features.cpp"),
                            os.path.join(CSRC, "cpu", "paths.cpp"),
                            os.path.join(CSRC, "cpu", "roof.cpp")],
                 extra_cflags=[f"-DEMOKERNELS_NAMESPACE={CUDA_OPS}"])
