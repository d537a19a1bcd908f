"""Builds emokernels._C: C++ CPU kernels always, CUDA kernels when torch and a toolkit allow.

EMOKERNELS_CUDA=1 forces the CUDA sources (error if impossible), =0 skips them, unset = auto.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py

if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    # torch's own guess follows `which nvcc`, which may be a symlink dir without the libraries.
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("EMOKERNELS_CUDA", "auto").lower()
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if flag in ("0", "off", "false", "no"):
        return False
    if flag in ("1", "on", "true", "yes"):
        if not possible:
            raise RuntimeError(
                "EMOKERNELS_CUDA=1 but torch has no CUDA build or no CUDA toolkit was found "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME})"
            )
        return True
    return possible


def sources(pattern: str) -> list[str]:
    paths = glob.glob(os.path.join(HERE, pattern), recursive=True)
    return sorted(os.path.relpath(p, HERE) for p in paths)


def extension():
    # Recursive: a new folder under csrc/ is built, never skipped silently.
    cpp = [p for p in sources("csrc/**/*.cpp") if not p.startswith(os.path.join("csrc", "cuda"))]
    # at::parallel_for is an OpenMP pragma in ATen's headers: without -fopenmp it runs serially.
    cxx_flags = ["-O3", "-std=c++20", "-fvisibility=hidden", "-Wno-maybe-uninitialized", "-fopenmp",
                 "-ffp-contract=off"]
    link_flags = ["-fopenmp"]
    cuda_sources = sources("csrc/**/*.cu")
    if want_cuda() and cuda_sources:
        # Turing and older-CUDA-core paths, the 1-bit tensor cores of Ampere and Hopper, and PTX
        # that later GPUs (Blackwell: CUDA-core XNOR path) compile at load time.
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;9.0+PTX")
        return CUDAExtension(
            "emokernels._C",
            cpp + cuda_sources,
            define_macros=[("EMOKERNELS_WITH_CUDA", "1")],
            # --fmad=false: the epilogues multiply, then add, as on the CPU (no fused FMA).
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20", "--fmad=false"]},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "emokernels._C", cpp, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
    )


class BuildPyWithKernelHeaders(build_py):
    """Ships the kernel headers (csrc/core, csrc/cuda) in the package as emokernels/_csrc: the
    CuPy path compiles them at run time where the extension was built without CUDA."""

    def run(self):
        super().run()
        for pattern in ("csrc/core/**/*.h", "csrc/cuda/*.cuh"):
            for path in glob.glob(os.path.join(HERE, pattern), recursive=True):
                rel = os.path.relpath(path, os.path.join(HERE, "csrc"))
                target = os.path.join(self.build_lib, "emokernels", "_csrc", rel)
                self.mkpath(os.path.dirname(target))
                self.copy_file(path, target)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True),
              "build_py": BuildPyWithKernelHeaders},
)
