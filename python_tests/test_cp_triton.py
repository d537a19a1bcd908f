"""The fused Triton CP convolution against the four-stage reference and the dense convolution.

Without a GPU the kernel runs in the Triton interpreter on the CPU. ``@triton.jit`` reads
TRITON_INTERPRET when it decorates a kernel and the interpreter reads it again while launching,
so the variable is set while this module imports the kernel module and during each of its
tests, never for the rest of the session (on the CPU no other module imports the kernels).
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from emokernels.ops.cp_conv2d import cp_conv2d_reference, cp_dense_weight

triton = pytest.importorskip("triton")

CUDA = torch.cuda.is_available()
INTERPRET = not CUDA or os.environ.get("TRITON_INTERPRET") == "1"
with pytest.MonkeyPatch.context() as patch:
    if INTERPRET:
        patch.setenv("TRITON_INTERPRET", "1")
    from triton.runtime.interpreter import InterpretedFunction

    from emokernels.triton import cp_conv2d as kernels

DEVICE = "cuda" if CUDA else "cpu"
if INTERPRET and not isinstance(kernels._cp_conv2d_kernel.fn, InterpretedFunction):
    pytest.skip("the kernel module was imported without TRITON_INTERPRET=1 and there is no GPU",
                allow_module_level=True)
needs_gpu = pytest.mark.skipif(INTERPRET, reason="the interpreter runs kernels on real data "
                                                 "only (wrap_triton leaves interpreted kernels "
                                                 "untraced): fake and compiled paths need a GPU")


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def make_inputs(b, c, h, w, r, n, kh, kw, bias=True, dtype=torch.float32, seed=0):
    """Random (never zero) x and factors, on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, c, h, w), (r, c), (r, kh), (r, kw), (n, r)] + ([(n,)] if bias else [])
    ts = [torch.randn(s, generator=g).to(DEVICE, dtype) for s in shapes]
    return (*ts, None) if not bias else tuple(ts)


def references(x, u_in, k_v, k_h, u_out, bias, stride, padding):
    """The four-stage and the dense convolution in float64 on the CPU (no TF32)."""
    x, u_in, k_v, k_h, u_out = (t.detach().cpu().double() for t in (x, u_in, k_v, k_h, u_out))
    bias = None if bias is None else bias.detach().cpu().double()
    dense = F.conv2d(x, cp_dense_weight(u_in, k_v, k_h, u_out), bias, stride, padding)
    return cp_conv2d_reference(x, u_in, k_v, k_h, u_out, bias, stride, padding), dense


def assert_matches(y, refs, rel):
    for ref in refs:
        assert y.shape == ref.shape
        tol = rel * ref.abs().max().item()
        torch.testing.assert_close(y.detach().cpu().double(), ref, rtol=rel, atol=tol)


# (B, C, H, W, R, N, kh, kw, stride, padding, bias); the interpreter's tiles are TH=2 rows,
# 16 input columns, BLOCK_N=32, BLOCK_R<=32, BLOCK_C<=64.
CASES = [
    pytest.param(2, 5, 7, 9, 6, 7, 3, 3, (1, 1), (1, 1), True, id="3x3-odd"),
    pytest.param(1, 70, 6, 31, 40, 40, 3, 3, (1, 1), (1, 1), True, id="blocks-of-C-R-N-W"),
    pytest.param(2, 3, 9, 7, 5, 3, 3, 1, (2, 2), (1, 0), False, id="3x1-s2-nobias"),
    pytest.param(1, 4, 6, 11, 4, 4, 1, 3, (1, 1), (0, 2), True, id="1x3-p2"),
    pytest.param(1, 17, 11, 10, 20, 9, 5, 3, (2, 1), (2, 1), True, id="5x3-s21"),
    pytest.param(1, 6, 5, 5, 3, 2, 5, 5, (1, 1), (0, 0), True, id="kernel-is-image"),
    pytest.param(1, 3, 4, 40, 5, 4, 1, 20, (1, 3), (0, 1), True, id="kw-over-window"),
]


@pytest.mark.parametrize("b, c, h, w, r, n, kh, kw, stride, padding, bias", CASES)
def test_float32_matches_reference_and_dense(b, c, h, w, r, n, kh, kw, stride, padding, bias):
    args = make_inputs(b, c, h, w, r, n, kh, kw, bias)
    y = kernels.cp_conv2d_triton(*args, stride, padding)
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert_matches(y, references(*args, stride, padding), 1e-5)


def test_channels_last_in_channels_last_out():
    x, *factors = make_inputs(2, 6, 7, 9, 5, 4, 3, 3)
    x = x.contiguous(memory_format=torch.channels_last)
    y = kernels.cp_conv2d_triton(x, *factors, (2, 1), (1, 1))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_matches(y, references(x, *factors, (2, 1), (1, 1)), 1e-5)


def test_non_contiguous_input_and_factors():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 8, 10, 12, generator=g).to(DEVICE)
    x = base.permute(0, 2, 1, 3)[:, ::2, 1:8, 2:11]  # [2, 5, 7, 9], no dense layout
    u_in = torch.randn(5, 6, generator=g).to(DEVICE).t()
    k_v = torch.randn(6, 6, generator=g).to(DEVICE)[:, ::2]
    k_h = torch.randn(3, 6, generator=g).to(DEVICE).t()
    u_out = torch.randn(6, 4, generator=g).to(DEVICE).t()
    bias = torch.randn(8, generator=g).to(DEVICE)[::2]
    args = (x, u_in, k_v, k_h, u_out, bias)
    assert not any(t.is_contiguous() for t in args)
    y = kernels.cp_conv2d_triton(*args, (1, 2), (1, 2))
    assert y.is_contiguous()
    assert_matches(y, references(*args, (1, 2), (1, 2)), 1e-5)


HALF = [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    INTERPRET, reason="the interpreter's tl.dot multiplies bfloat16 bit patterns as integers"))]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("geometry", [((3, 3), (1, 1), (1, 1)), ((5, 3), (2, 1), (2, 0))],
                         ids=["3x3", "5x3-s21"])
def test_half_precision(dtype, geometry):
    (kh, kw), stride, padding = geometry
    args = make_inputs(2, 20, 9, 11, 18, 12, kh, kw, dtype=dtype, seed=2)
    y = kernels.cp_conv2d_triton(*args, stride, padding)
    assert y.dtype == dtype
    # fp32 accumulation; the rank intermediates are rounded to the input dtype for the last dot
    assert_matches(y, references(*args, stride, padding),
                   2e-3 if dtype == torch.float16 else 2e-2)


def test_gradients_match_reference_autograd():
    args = make_inputs(2, 5, 7, 8, 6, 4, 3, 2)
    stride, padding = (2, 1), (1, 1)
    leaves = [t.clone().requires_grad_() for t in args]
    y = kernels.cp_conv2d_triton(*leaves, stride, padding)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    grads = torch.autograd.grad(y, leaves, grad)
    ref_leaves = [t.clone().requires_grad_() for t in args]
    ref = cp_conv2d_reference(*ref_leaves, stride, padding)
    for got, want in zip(grads, torch.autograd.grad(ref, ref_leaves, grad), strict=True):
        torch.testing.assert_close(got, want)


def test_gradient_of_x_only():
    x, *factors = make_inputs(1, 4, 6, 6, 3, 2, 3, 3)
    x.requires_grad_()
    y = kernels.cp_conv2d_triton(x, *factors, (1, 1), (1, 1))
    (gx,) = torch.autograd.grad(y.sum(), [x])
    x_ref = x.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(cp_conv2d_reference(x_ref, *factors, (1, 1), (1, 1)).sum(),
                                  [x_ref])
    torch.testing.assert_close(gx, want)


def _bad(name):
    """Valid inputs ([1, 3, 5, 5], R = 4, N = 2, 3x3, padding 1) with one thing wrong."""
    x, u_in, k_v, k_h, u_out, bias = make_inputs(1, 3, 5, 5, 4, 2, 3, 3)
    stride, padding = [1, 1], [1, 1]
    if name == "dtype":
        u_in = u_in.half()
    elif name == "float64":
        x, u_in, k_v, k_h, u_out, bias = (t.double() for t in (x, u_in, k_v, k_h, u_out, bias))
    elif name == "rank-x":
        x = x[0]
    elif name == "rank-factor":
        k_v = k_v[:, 0]
    elif name == "rank-disagree":
        k_h = torch.cat([k_h, k_h[:1]])
    elif name == "kernel-too-large":
        k_v = torch.randn(4, 8, device=DEVICE)
    elif name == "device":
        bias = bias.to("meta")
    return x, u_in, k_v, k_h, u_out, bias, stride, padding


@pytest.mark.parametrize("name, match", [
    ("dtype", "u_in must have x's dtype torch.float32, got torch.float16"),
    ("float64", "x must be one of float32, float16, bfloat16, got torch.float64"),
    ("rank-x", "x must be 4-D"),
    ("rank-factor", "k_v must be 2-D"),
    ("rank-disagree", "the factors disagree on the rank"),
    ("kernel-too-large", "the 8x3 kernel does not fit the padded 7x7 image"),
    ("device", "all tensors must be on one device"),
])
def test_bad_input_raises(name, match):
    with pytest.raises(RuntimeError, match=f"cp_conv2d_triton: {match}"):
        kernels.cp_conv2d_triton(*_bad(name))


def test_configs_fitted_to_output_channels():
    configs = [triton.Config({"TH": 2, "WIN": 16, "BLOCK_N": bn}, num_warps=4, num_stages=2)
               for bn in (64, 128, 64)]
    for n, want in ((12, [16]), (40, [64]), (100, [64, 128]), (300, [64, 128])):
        fitted = kernels._fit_configs(configs, {"N": n})
        assert [c.kwargs["BLOCK_N"] for c in fitted] == want
        assert all(c.num_warps == 4 and c.num_stages == 2 for c in fitted)


def test_opcheck_schema_and_autograd_registration():
    args = (*make_inputs(1, 5, 6, 7, 6, 4, 3, 3), [1, 2], [1, 0])
    torch.library.opcheck(torch.ops.emokernels.cp_conv2d_triton.default, args,
                          test_utils=("test_schema", "test_autograd_registration"))


@needs_gpu
def test_opcheck_fake_and_aot_dispatch():
    args = (*make_inputs(1, 5, 6, 7, 6, 4, 3, 3), [1, 2], [1, 0])
    torch.library.opcheck(torch.ops.emokernels.cp_conv2d_triton.default, args,
                          test_utils=("test_faketensor", "test_aot_dispatch_dynamic"))


@needs_gpu
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    args = make_inputs(2, 5, 7, 9, 6, 4, 3, 3)
    x = args[0].contiguous(memory_format=torch.channels_last)

    def f(x, *factors):
        return torch.relu(kernels.cp_conv2d_triton(x, *factors, (1, 2), (1, 1)))

    compiled = torch.compile(f, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(x, *args[1:]), f(x, *args[1:]))


# Run without the interpreter (a GPU is not needed for either): under AOT tracing with dynamic
# shapes the triton_op decomposes into the kernel's functional wrapper with a symbolic grid, and
# the kernel compiles to a cubin for sm_90 in each dtype (bfloat16 runs only there).
_TRACE_AND_COMPILE = textwrap.dedent("""
    import torch
    import triton
    from functorch.compile import make_boxed_func
    from torch._functorch.aot_autograd import aot_function
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv,
                                                       StatelessSymbolicContext)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import emokernels  # noqa: F401
    from emokernels.triton.cp_conv2d import _cp_conv2d_kernel, cp_conv2d_triton

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm.code)
        return make_boxed_func(gm.forward)

    mode = FakeTensorMode(shape_env=ShapeEnv())
    x = torch.empty(2, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    tensors = [x, *(torch.empty(s) for s in [(6, 5), (6, 3), (6, 1), (4, 6), (4,)])]
    fakes = [mode.from_tensor(t, symbolic_context=StatelessSymbolicContext(
        dynamic_sizes=[DimDynamic.DYNAMIC] * t.dim())) for t in tensors]
    with mode:
        y = aot_function(lambda *a: cp_conv2d_triton(*a, [2, 1], [1, 0]), record,
                         dynamic=True)(*fakes)
        assert [int(s) for s in y.shape] == [2, 4, 4, 9], y.shape
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert "triton_kernel_wrapper_functional" in graphs[0], graphs[0]
    assert "sym_size" in graphs[0], graphs[0]

    fn = _cp_conv2d_kernel.fn
    for dtype in ("fp32", "fp16", "bf16"):
        meta = dict(KH=5, KW=3, SH=2, SW=1, HAS_BIAS=True, BLOCK_C=32, BLOCK_R=32,
                    **_cp_conv2d_kernel.configs[1].kwargs)
        signature = {name: "constexpr" if name in meta else
                     f"*{dtype}" if name.endswith("_ptr") else "i32" for name in fn.arg_names}
        constexprs = {(fn.arg_names.index(k),): v for k, v in meta.items()}
        triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": 4})
    print("ok")
""")


def test_dynamic_shape_trace_and_sm90_compile_without_gpu():
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _TRACE_AND_COMPILE], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
