"""The CUDA kernels compiled at run time through CuPy (NVRTC), for an install built without a
CUDA toolkit on a machine with a GPU: the same kernel headers (csrc/cuda/*.cuh) as the compiled
extension, registered as the ops' CUDA kernels on torch tensors.

:func:`register` does it when the extension has no CUDA kernels, a GPU is present and CuPy
(``pip install emokernels[cupy]``) imports; emokernels calls it at import. Each process compiles
the kernels once per device, on its first call there (seconds). Launch arguments are
the kernels' own structs, built as NumPy structured scalars whose layout :data:`STRUCTS` maps
to the C++ types (checked against the C++ compiler by the tests: plain structs of pointers and
fixed-width integers, laid out alike on the host and the device).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import numpy as np
import torch

from .ops import _checks

_HERE = os.path.dirname(os.path.abspath(__file__))

# Every kernel as the launchers instantiate it (template arguments spelled for NVRTC).
ELEMENT = {torch.float32: "float", torch.float64: "double", torch.float16: "__half",
           torch.bfloat16: "__nv_bfloat16"}
KERNELS = [
    *(f"emokernels::cuda::pack_bits_kernel<{t}>" for t in ELEMENT.values()),
    "emokernels::cuda::pack_channels_kernel",
    *(f"emokernels::cuda::xnor_gemm_kernel<{fused}>" for fused in ("false", "true")),
    *(f"emokernels::cuda::xnor_gemm_mma_kernel<{fused}, {chunk}>" for fused in ("false", "true")
      for chunk in (1, 4)),
    "emokernels::cuda::xnor_row_popcounts_kernel",
    *(f"emokernels::cuda::bwn_{kind}_kernel<{t}>" for kind in ("gemm", "gemv")
      for t in ("float", "__half", "__nv_bfloat16")),
    *(f"emokernels::cuda::hashed_matmul_kernel<{f}>" for f in ("false", "true")),
    "emokernels::cuda::hashed_gemv_kernel<4>",
    *(f"emokernels::cuda::hashed_bucket_grad_kernel<{f}>" for f in ("false", "true")),
]


def _struct(fields: list[tuple[str, object]]) -> np.dtype:
    return np.dtype(fields, align=True)  # C layout: each field at its natural alignment


_PTR, _I64, _U32 = np.uint64, np.int64, np.uint32
FAST_MOD = _struct([("d", _U32), ("magic", _U32), ("shift", _U32)])
HASHED_PROBLEM = _struct([("buckets", _PTR), ("nb", FAST_MOD), ("seed", _U32),
                          ("block_shift", _U32), ("rows", _I64), ("cols", _I64)])
GENERATED_MATMUL = _struct([("a", _PTR), ("w", HASHED_PROBLEM), ("bias", _PTR), ("c", _PTR),
                            ("m", _I64), ("depth", _I64), ("cols", _I64)])
BUCKET_GRAD = _struct([("grad", _PTR), ("x", _PTR), ("w", HASHED_PROBLEM), ("out", _PTR),
                       ("fixed", _PTR), ("scale", np.float64), ("m", _I64)])
XNOR_PROBLEM = _struct([("a", _PTR), ("b", _PTR), ("m", _I64), ("n", _I64),
                        ("row_words", _I64), ("k", _I64), ("last_mask", _U32),
                        ("out_i32", _PTR), ("out_f32", _PTR), ("scale", _PTR), ("bias", _PTR),
                        ("offset", _PTR), ("offset_rows", _I64), ("offset_index", _PTR),
                        ("out_bits", _PTR),
                        ("bounds", _PTR), ("out_words", _I64)])
PACK_CHANNELS_PROBLEM = _struct([("x", _PTR), ("lower", _PTR), ("upper", _PTR), ("out", _PTR),
                                 ("batch", _I64), ("channels", _I64), ("pixels", _I64),
                                 ("words", _I64)])
BWN_PROBLEM = _struct([("x", _PTR), ("w", _PTR), ("alpha", _PTR), ("row_sums", _PTR),
                       ("out", _PTR), ("m", _I64), ("n", _I64), ("k", _I64), ("words", _I64),
                       ("conv", _PTR)])
BWN_ROWS = _struct([("k", _I64), ("conv", np.bool_),
                    *((name, _I64) for name in ("ho", "wo", "h", "w", "c", "kw", "sh", "sw",
                                                "dh", "dw"))])
# C++ type -> its NumPy twin
STRUCTS = {
    "emokernels::hashed::FastMod": FAST_MOD,
    "emokernels::hashed::HashedProblem": HASHED_PROBLEM,
    "emokernels::cuda::GeneratedMatmul": GENERATED_MATMUL,
    "emokernels::cuda::BucketGrad": BUCKET_GRAD,
    "emokernels::xnor::XnorProblem": XNOR_PROBLEM,
    "emokernels::pack::PackChannelsProblem": PACK_CHANNELS_PROBLEM,
    "emokernels::bwn::BwnProblem<float>": BWN_PROBLEM,  # pointers only: one layout for any T
    "emokernels::cuda::BwnRows": BWN_ROWS,
}


def header_dir() -> str:
    """The kernel headers: shipped in the package (``_csrc``) or the source tree's csrc/."""
    shipped = os.path.join(_HERE, "_csrc")
    return shipped if os.path.isdir(shipped) else os.path.join(os.path.dirname(_HERE), "csrc")


def source() -> str:
    """One translation unit of every kernel header."""
    headers = sorted(glob.glob(os.path.join(header_dir(), "cuda", "*.cuh")))
    return "#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n" + "".join(
        f'#include "cuda/{os.path.basename(h)}"\n' for h in headers)


def options() -> tuple[str, ...]:
    """NVRTC options: C++17, no fused multiply-add (the CPU's multiply-then-add epilogues)."""
    return ("-std=c++17", "--fmad=false", f"-I{header_dir()}")


def available() -> bool:
    """A GPU, CuPy, and an extension built without CUDA kernels."""
    return (torch.cuda.is_available() and not torch.ops.emokernels.cuda_compiled()
            and importlib.util.find_spec("cupy") is not None)


@functools.cache
def _kernels(device: int) -> dict:
    """Every kernel of :data:`KERNELS`, compiled by NVRTC and loaded on ``device`` (once per
    process and device). Not through CuPy's cached compile: that adds ``-ftz=true``, flushing
    float32 subnormals (a negative subnormal would pack as +1), unlike the nvcc build and the
    CPU; and its disk cache is keyed by the source text, which here only names the headers."""
    import cupy
    from cupy._core.core import assemble_cupy_compiler_options
    from cupy.cuda import compiler, function

    with cupy.cuda.Device(device):
        binary, mapping = compiler.compile_using_nvrtc(
            source(), assemble_cupy_compiler_options(options()), name_expressions=KERNELS)
        module = function.Module()
        module.load(binary)
        return {name: module.get_function(mapping[name]) for name in KERNELS}


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _fill(dtype: np.dtype, **values) -> np.ndarray:
    out = np.zeros(1, dtype)
    for name, value in values.items():
        out[name] = value
    return out


def _blocks(items: int, per_block: int) -> int:
    return (items + per_block - 1) // per_block


def _check_grid(grid: tuple[int, ...]) -> tuple[int, int, int]:
    """``grid`` as 3 extents; an error where it is beyond CUDA's limits."""
    grid = (*grid, 1, 1)[:3]
    if not (1 <= grid[0] <= 2**31 - 1 and grid[1] <= 65535):
        raise RuntimeError(f"emokernels: the problem needs a grid of {grid[0]} x {grid[1]} x "
                           f"{grid[2]} blocks, beyond CUDA's limits (2^31 - 1 x 65535 x 65535)")
    return grid


def _launch(device: torch.device, name: str, grid: tuple[int, ...], block: int, *args) -> None:
    """Launches a kernel of :data:`KERNELS` on torch's current stream of ``device``."""
    import cupy

    grid = _check_grid(grid)
    index = torch.cuda.current_device() if device.index is None else device.index
    kernel = _kernels(index)[name]
    stream = torch.cuda.current_stream(index).cuda_stream
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream):
        kernel(grid, (block,), args)


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    shape = _checks.pack_bits_output_shape(x)
    x = x.contiguous()
    out = torch.empty(shape, dtype=torch.int32, device=x.device)
    k, words = x.shape[-1], shape[-1]
    rows = x.numel() // k
    if rows:
        _launch(x.device, f"emokernels::cuda::pack_bits_kernel<{ELEMENT[x.dtype]}>",
                (min(_blocks(rows * words, 8), 65535),), 256, np.uint64(_ptr(x)),
                np.uint64(_ptr(out)), np.int64(rows), np.int64(k), np.int64(words))
    return out


def pack_channels(x, lower, upper) -> torch.Tensor:
    shape = _checks.pack_channels_output_shape(x, lower, upper)
    out = torch.empty(shape, dtype=torch.int32, device=x.device)
    if out.numel():
        x, lower, upper = x.contiguous(), lower.contiguous(), upper.contiguous()
        p = _fill(PACK_CHANNELS_PROBLEM, x=_ptr(x), lower=_ptr(lower), upper=_ptr(upper),
                  out=_ptr(out), batch=shape[0], channels=x.shape[1], pixels=shape[1] * shape[2],
                  words=shape[3])
        _launch(x.device, "emokernels::cuda::pack_channels_kernel",
                (min(_blocks(out.numel(), 256), 65535),), 256, p)
    return out


def _xnor_tensor_cores(device: torch.device) -> bool:
    major = torch.cuda.get_device_capability(device)[0]
    forced = os.environ.get("EMOKERNELS_CUDA_XNOR", "")
    if forced == "":
        return 8 <= major < 10  # Blackwell emulates b1 mma: the CUDA-core tiles there
    if forced not in ("cores", "tensor-cores"):
        raise RuntimeError(f"EMOKERNELS_CUDA_XNOR={forced} is not one of: cores, tensor-cores")
    if forced == "tensor-cores" and major < 8:
        raise RuntimeError("EMOKERNELS_CUDA_XNOR=tensor-cores needs sm_80 or later")
    return forced == "tensor-cores"


def _run_xnor(a, b, k: int, fused: bool, **epilogue) -> None:
    """xnor_gemm(_scaled / _sign) on the path the device takes; epilogue: the output and
    (fused) the scale / bias / offset / bounds fields of the problem."""
    m, n = a.shape[0], b.shape[0]
    p = _fill(XNOR_PROBLEM, a=_ptr(a), b=_ptr(b), m=m, n=n, row_words=a.shape[1], k=k,
              last_mask=(1 << (k % 32)) - 1 if k % 32 else 0xFFFFFFFF,
              **{"offset_rows": 1, **epilogue})
    flag = "true" if fused else "false"
    if _xnor_tensor_cores(a.device):
        grid = (_blocks(m, 128), _blocks(n, 128))
        _check_grid(grid)  # before any launch
        pops = torch.empty(m + n, dtype=torch.int32, device=a.device)
        _launch(a.device, "emokernels::cuda::xnor_row_popcounts_kernel", (_blocks(m + n, 8),),
                256, p, np.uint64(_ptr(pops)))
        # 16-byte copies where every row starts 16-byte aligned (as xnor_mma_wide_copies)
        wide = a.shape[1] % 4 == 0 and _ptr(a) % 16 == 0 and _ptr(b) % 16 == 0
        _launch(a.device, f"emokernels::cuda::xnor_gemm_mma_kernel<{flag}, {4 if wide else 1}>",
                grid, 256, p, np.uint64(_ptr(pops)), np.uint64(_ptr(pops) + 4 * m))
    else:
        _launch(a.device, f"emokernels::cuda::xnor_gemm_kernel<{flag}>",
                (_blocks(m, 64), _blocks(n, 64)), 256, p)


def xnor_gemm(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    shape = _checks.xnor_gemm_output_shape(a, b, k)
    out = torch.empty(shape, dtype=torch.int32, device=a.device)
    if out.numel():
        _run_xnor(a.contiguous(), b.contiguous(), k, False, out_i32=_ptr(out))
    return out


def _offset_fields(offset, offset_index, op: str) -> tuple[dict, tuple]:
    """The XnorProblem fields of a checked offset and row index, and the contiguous tensors
    they point into (to keep until the launch); the index's entries are checked here, as the
    C++ ops do: the kernels read through them."""
    if offset is None:
        return {}, ()
    offset = offset.contiguous()
    fields = {"offset": _ptr(offset), "offset_rows": offset.shape[0]}
    if offset_index is not None:
        offset_index = offset_index.contiguous()
        low, high = torch.aminmax(offset_index)
        torch._check(int(low) >= 0 and int(high) < offset.shape[0],
                     lambda: f"{op}: offset_index entries must be in [0, {offset.shape[0]}) "
                             "(offset's rows)")
        fields.update(offset_index=_ptr(offset_index), offset_rows=offset_index.shape[0])
    return fields, (offset, offset_index)


def xnor_gemm_scaled(a, b, k: int, scale, bias=None, offset=None,
                     offset_index=None) -> torch.Tensor:
    shape = _checks.xnor_gemm_scaled_output_shape(a, b, k, scale, bias, offset, offset_index)
    out = torch.empty(shape, dtype=torch.float32, device=a.device)
    fields, _keep = _offset_fields(offset, offset_index, "xnor_gemm_scaled")
    if out.numel():
        scale = scale.contiguous()
        bias = None if bias is None else bias.contiguous()
        _run_xnor(a.contiguous(), b.contiguous(), k, True, out_f32=_ptr(out),
                  scale=_ptr(scale), bias=_ptr(bias), **fields)
    return out


def xnor_gemm_sign(a, b, k: int, bounds, offset=None, offset_index=None) -> torch.Tensor:
    shape = _checks.xnor_gemm_sign_output_shape(a, b, k, bounds, offset, offset_index)
    out = torch.zeros(shape, dtype=torch.int32, device=a.device)
    fields, _keep = _offset_fields(offset, offset_index, "xnor_gemm_sign")
    if out.numel():
        bounds = bounds.contiguous()
        _run_xnor(a.contiguous(), b.contiguous(), k, True, out_bits=_ptr(out),
                  out_words=shape[1], bounds=_ptr(bounds), **fields)
    return out


def _bwn(x, w, alpha, out, m: int, n: int, k: int, rows: np.ndarray | None) -> None:
    alpha = alpha.to(torch.float32).contiguous()
    p = _fill(BWN_PROBLEM, x=_ptr(x), w=_ptr(w), alpha=_ptr(alpha), out=_ptr(out), m=m, n=n,
              k=k, words=w.shape[1])
    element = ELEMENT[x.dtype]
    if rows is None and m <= 4:
        _launch(x.device, f"emokernels::cuda::bwn_gemv_kernel<{element}>", (_blocks(n, 8),),
                256, p)
    else:
        rows = _fill(BWN_ROWS, k=k) if rows is None else rows
        _launch(x.device, f"emokernels::cuda::bwn_gemm_kernel<{element}>",
                (_blocks(m, 64), _blocks(n, 64)), 256, p, rows)


def bwn_gemm(x, w_bits, alpha, k: int) -> torch.Tensor:
    shape = _checks.bwn_gemm_output_shape(x, w_bits, alpha, k)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    if out.numel():
        _bwn(x.contiguous(), w_bits.contiguous(), alpha, out, shape[0], shape[1], k, None)
    return out


def bwn_conv2d(x, w_bits, alpha, kernel_size, stride, dilation) -> torch.Tensor:
    shape = _checks.bwn_conv2d_output_shape(x, w_bits, alpha, kernel_size, stride, dilation)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    if out.numel():
        b, h, w, c = x.shape
        (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
        k = kh * kw * c
        # A stride with one output, a dilation with one tap: unused, normalized as in C++.
        ho, wo = shape[1], shape[2]
        rows = _fill(BWN_ROWS, k=k, conv=True, ho=ho, wo=wo, h=h, w=w, c=c, kw=kw,
                     sh=1 if ho == 1 else sh, sw=1 if wo == 1 else sw, dh=1 if kh == 1 else dh,
                     dw=1 if kw == 1 else dw)
        _bwn(x.contiguous(), w_bits.contiguous(), alpha, out, b * shape[1] * shape[2],
             shape[3], k, rows)
    return out


def _hashed_problem(buckets, seed: int, block: int, rows: int, cols: int) -> np.ndarray:
    d = buckets.shape[0]
    shift = (d - 1).bit_length()  # ceil(log2 d): FastMod's magic number, as in the core
    nb = _fill(FAST_MOD, d=d, magic=((1 << (31 + shift)) + d - 1) // d, shift=31 + shift)
    return _fill(HASHED_PROBLEM, buckets=_ptr(buckets), nb=nb, seed=seed,
                 block_shift=block.bit_length() - 1, rows=rows, cols=cols)


def hashed_linear(x, buckets, out_features: int, seed: int, block: int,
                  bias=None) -> torch.Tensor:
    m, n = _checks.hashed_linear_output_shape(x, buckets, out_features, seed, block, bias)
    out = torch.empty((m, n), dtype=torch.float32, device=x.device)
    if m:
        x, buckets = x.contiguous(), buckets.contiguous()
        bias = None if bias is None else bias.contiguous()
        k = x.shape[1]
        g = _fill(GENERATED_MATMUL, a=_ptr(x), w=_hashed_problem(buckets, seed, block, n, k),
                  bias=_ptr(bias), c=_ptr(out), m=m, depth=k, cols=n)
        if m <= 4:
            _launch(x.device, "emokernels::cuda::hashed_gemv_kernel<4>", (_blocks(n, 8),), 256,
                    g)
        else:
            _launch(x.device, "emokernels::cuda::hashed_matmul_kernel<true>",
                    (_blocks(m, 64), _blocks(n, 64)), 256, g)
    return out


def hashed_linear_backward(grad, x, buckets, seed: int, block: int, output_mask,
                           deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _checks.check_hashed_linear_backward(grad, x, buckets, seed, block)
    grad, x, buckets = grad.contiguous(), x.contiguous(), buckets.contiguous()
    (m, k), n, nb = x.shape, grad.shape[1], buckets.shape[0]
    w = _hashed_problem(buckets, seed, block, n, k)
    grad_x = torch.empty((m, k) if output_mask[0] else (0,), dtype=torch.float32, device=x.device)
    grad_buckets = torch.zeros(nb if output_mask[1] else 0, dtype=torch.float32, device=x.device)
    if output_mask[0] and m:
        g = _fill(GENERATED_MATMUL, a=_ptr(grad), w=w, c=_ptr(grad_x), m=m, depth=n, cols=k)
        _launch(x.device, "emokernels::cuda::hashed_matmul_kernel<false>",
                (_blocks(m, 64), _blocks(k, 64)), 256, g)
    if output_mask[1] and m:
        grid = (_blocks(n, 64), _blocks(k, 64))
        if deterministic:
            bound = (grad.abs().sum(1, dtype=torch.float64)
                     * x.abs().sum(1, dtype=torch.float64)).sum().item()
            if not np.isfinite(bound):
                raise RuntimeError("hashed_linear_backward: the deterministic bucket gradient "
                                   "needs finite grad and x (found inf or NaN)")
            scale = 1.0 if bound == 0 else float(np.ldexp(1.0, 62 - int(np.ceil(np.log2(bound)))))
            fixed = torch.zeros(nb, dtype=torch.int64, device=x.device)
            g = _fill(BUCKET_GRAD, grad=_ptr(grad), x=_ptr(x), w=w, fixed=_ptr(fixed),
                      scale=scale, m=m)
            _launch(x.device, "emokernels::cuda::hashed_bucket_grad_kernel<true>", grid, 256, g)
            grad_buckets = (fixed.double() / scale).float()
        else:
            g = _fill(BUCKET_GRAD, grad=_ptr(grad), x=_ptr(x), w=w, out=_ptr(grad_buckets),
                      scale=1.0, m=m)
            _launch(x.device, "emokernels::cuda::hashed_bucket_grad_kernel<false>", grid, 256, g)
    return grad_x, grad_buckets


OPS = {"pack_bits": pack_bits, "pack_channels": pack_channels, "xnor_gemm": xnor_gemm,
       "xnor_gemm_scaled": xnor_gemm_scaled, "xnor_gemm_sign": xnor_gemm_sign,
       "bwn_gemm": bwn_gemm, "bwn_conv2d": bwn_conv2d, "hashed_linear": hashed_linear,
       "hashed_linear_backward": hashed_linear_backward}

_LIBRARY: list = []  # the torch.library.Library that holds the registrations, kept alive


def register() -> bool:
    """Registers :data:`OPS` as the CUDA kernels of ``torch.ops.emokernels`` if
    :func:`available`; returns whether it did (once per process)."""
    if _LIBRARY or not available():
        return bool(_LIBRARY)
    library = torch.library.Library("emokernels", "IMPL")
    for name, fn in OPS.items():
        library.impl(name, fn, "CUDA")
    _LIBRARY.append(library)
    return True
