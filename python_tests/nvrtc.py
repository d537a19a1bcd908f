"""A minimal NVRTC driver (ctypes) for tests: compiles CUDA source to PTX at run time, without a
GPU, with the NVRTC library of torch's CUDA build (the nvidia-cuda-nvrtc wheel) or of the
toolkit. The package's CUDA kernels must compile this way too (the run-time compile a toolkit-
free install would use), which standard C++ headers would break: NVRTC has none."""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Sequence

import torch.utils.cpp_extension as cpp_extension


def _library_dirs() -> list[str]:
    dirs = []
    try:
        import nvidia

        for root in nvidia.__path__:
            dirs += glob.glob(os.path.join(root, "cu*", "lib")) + glob.glob(
                os.path.join(root, "cuda_nvrtc", "lib"))
    except ImportError:
        pass
    dirs += [os.path.join(home, "lib64") for home in _toolkits()]
    return dirs


def load() -> ctypes.CDLL | None:
    """libnvrtc, its builtins loaded first (NVRTC finds them by name), or None."""
    for directory in _library_dirs():
        libs = sorted(glob.glob(os.path.join(directory, "libnvrtc.so*")))
        builtins = sorted(glob.glob(os.path.join(directory, "libnvrtc-builtins.so*")))
        if libs and builtins:
            ctypes.CDLL(builtins[0], mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(libs[0])
    return None


def _toolkits() -> list[str]:
    homes = [os.environ.get("CUDA_HOME"), cpp_extension.CUDA_HOME, "/usr/local/cuda"]
    return [h for h in dict.fromkeys(homes) if h]


def include_dirs() -> list[str]:
    """CUDA's headers for NVRTC, from the first toolkit that has them: libcu++
    (<cuda/std/...>, under include/cccl since CUDA 13) and cuda_fp16.h / cuda_bf16.h."""
    for home in _toolkits():
        include = os.path.join(home, "include")
        if not os.path.isfile(os.path.join(include, "cuda_fp16.h")):
            continue
        return [d for d in (os.path.join(include, "cccl"), include)
                if os.path.isdir(os.path.join(d, "cuda", "std"))
                or os.path.isfile(os.path.join(d, "cuda_fp16.h"))]
    return []


def compile_ptx(lib: ctypes.CDLL, source: str, options: Sequence[str],
                name_expressions: Sequence[str] = ()) -> tuple[int, str]:
    """(NVRTC result code, compile log); name_expressions are instantiated (templates)."""
    prog = ctypes.c_void_p()
    lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"emokernels.cu", 0, None, None)
    for expr in name_expressions:
        lib.nvrtcAddNameExpression(prog, expr.encode())
    opts = [o.encode() for o in options]
    result = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return result, log.value.decode(errors="replace")
