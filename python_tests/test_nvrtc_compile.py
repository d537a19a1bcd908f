"""The run-time CUDA compile of the CuPy path, checked without a GPU: every kernel header
compiles with NVRTC (no C++ standard library) for each architecture the build targets, every
kernel instantiated, and the NumPy twins of the kernels' argument structs have the compiler's
layout."""

import glob
import os
import re
import subprocess

import numpy as np
import pytest
import torch

from emokernels import cupy_backend

from . import nvrtc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
HARNESS = os.path.join(ROOT, "python_tests", "cuda_emulation")
LIB = nvrtc.load()
needs_nvrtc = pytest.mark.skipif(LIB is None or not nvrtc.include_dirs(),
                                 reason="no NVRTC library or CUDA headers")


def compile_source(source: str, arch: str = "compute_80", names=()) -> tuple[int, str]:
    options = [f"--gpu-architecture={arch}", *cupy_backend.options(),
               *(f"-I{d}" for d in nvrtc.include_dirs())]
    return nvrtc.compile_ptx(LIB, source, options, names)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_75", "compute_80", "compute_90"])
def test_every_kernel_compiles_with_nvrtc(arch):
    result, log = compile_source(cupy_backend.source(), arch, cupy_backend.KERNELS)
    assert result == 0, log


# A kernel's name, after any __launch_bounds__ (which may span lines).
KERNEL_NAME = re.compile(
    r"^(?:static )?__global__ void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\(", re.M)


def test_every_kernel_is_instantiated():
    defined = set()
    for header in glob.glob(os.path.join(cupy_backend.header_dir(), "cuda", "*.cuh")):
        with open(header) as f:
            defined |= set(KERNEL_NAME.findall(f.read()))
    assert defined == {k.split("::")[-1].split("<")[0] for k in cupy_backend.KERNELS}


def fields(dtype: np.dtype, prefix: str = "", base: int = 0):
    """(C++ member path, byte offset) of every field, nested structs included."""
    for name, (field, offset) in dtype.fields.items():
        yield f"{prefix}{name}", base + offset
        if field.fields:
            yield from fields(field, f"{prefix}{name}.", base + offset)


def compiler_layout(structs: dict[str, np.dtype], tmp_path) -> list[str]:
    """sizeof and offsetof of the structs' members as the C++ compiler lays them out (the
    kernel headers under the CPU emulation of CUDA), one line each, in fields() order."""
    lines = [f'std::printf("%zu\\n", sizeof({cpp}));\n' + "".join(
        f'std::printf("%zu\\n", offsetof({cpp}, {path}));\n' for path, _ in fields(dtype))
        for cpp, dtype in structs.items()]
    probe = tmp_path / "layout.cpp"
    probe.write_text('#include "cuda_emulation.h"\n' + "".join(
        f'#include "cuda/{os.path.basename(h)}"\n'
        for h in sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cuh")))) +
        "#include <cstddef>\n#include <cstdio>\nint main() {\n" + "".join(lines) + "}\n")
    exe = tmp_path / "layout"
    subprocess.run(["c++", "-std=c++20", f"-I{HARNESS}", f"-I{CSRC}", str(probe), "-o",
                    str(exe)], check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True,
                          text=True).stdout.split()


def numpy_layout(structs: dict[str, np.dtype]) -> list[str]:
    return [str(v) for dtype in structs.values()
            for v in (dtype.itemsize, *(offset for _, offset in fields(dtype)))]


def test_argument_structs_have_the_compiler_layout(tmp_path):
    assert numpy_layout(cupy_backend.STRUCTS) == compiler_layout(cupy_backend.STRUCTS, tmp_path)


def test_a_wrong_layout_is_caught(tmp_path):
    wrong = {"emokernels::hashed::FastMod": np.dtype(
        [("d", np.uint32), ("magic", np.uint64), ("shift", np.uint32)], align=True)}
    assert numpy_layout(wrong) != compiler_layout(wrong, tmp_path)


@needs_nvrtc
def test_a_standard_header_is_an_nvrtc_error():
    result, log = nvrtc.compile_ptx(LIB, "#include <cstdint>\n", ["-std=c++17"])
    assert result != 0 and "cstdint" in log


def test_the_backend_covers_every_op_and_stays_off_without_a_gpu():
    schemas = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas()
               if s.name.startswith("emokernels::")}
    helpers = {"cpu_features", "cpu_isa", "cpu_kernel_path", "cpu_roof", "cuda_compiled"}
    triton = {"cp_conv2d", "cp_conv2d_triton"}  # CUDA through the Triton kernel
    assert set(cupy_backend.OPS) == schemas - helpers - triton
    if not torch.cuda.is_available():
        assert not cupy_backend.available() and not cupy_backend.register()
