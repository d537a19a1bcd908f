"""cp_conv2d on the CPU (the fused C++ kernel, every SIMD path) against the four-stage
composition and the dense convolution in float64."""

import pytest
import torch
import torch.nn.functional as F

from emokernels import ops

# (batch, C, H, W, R, N, kh, kw, stride, padding): GEMM tails in every dimension (rank and
# channels not multiples of 16, one pixel, one channel), asymmetric kernels and strides,
# padding wider than the kernel (output rows that read only padding), SqueezeNet's fire9.
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0)),
    (2, 5, 7, 9, 3, 4, 3, 3, (1, 1), (1, 1)),
    (3, 17, 11, 10, 37, 19, 3, 5, (2, 1), (0, 2)),
    (2, 16, 9, 9, 20, 33, 3, 3, (2, 2), (1, 1)),
    (1, 3, 4, 4, 2, 2, 3, 3, (1, 1), (4, 4)),
    (2, 7, 6, 13, 9, 40, 5, 1, (1, 3), (2, 0)),
    (1, 64, 13, 13, 192, 256, 3, 3, (1, 1), (1, 1)),
    (4, 24, 15, 8, 48, 7, 1, 3, (3, 2), (0, 1)),
]


def factors(c, r, n, kh, kw, bias=True, dtype=torch.float32):
    out = [torch.randn(r, c, dtype=dtype), torch.randn(r, kh, dtype=dtype),
           torch.randn(r, kw, dtype=dtype), torch.randn(n, r, dtype=dtype)]
    return (*out, torch.randn(n, dtype=dtype) if bias else None)


def double(tensors):
    return [None if t is None else t.double() for t in tensors]


def assert_close_to_reference(out, x, fs, stride, padding):
    want = ops.cp_conv2d_reference(x.double(), *double(fs), stride, padding)
    dense = F.conv2d(x.double(), ops.cp_dense_weight(*double(fs[:4])), double(fs[4:])[0],
                     stride, padding)
    assert torch.allclose(want, dense, atol=1e-9 * dense.abs().max().item() + 1e-9)
    assert out.shape == want.shape and out.dtype == torch.float32
    # float32 rounding is relative to the sum of the products' magnitudes.
    magnitude = ops.cp_conv2d_reference(x.double().abs(), *[t.abs() for t in double(fs[:4])],
                                        None, stride, padding)
    assert ((out.double() - want).abs() <= 2e-5 * magnitude + 1e-6).all()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(isa, shape, layout):
    b, c, h, w, r, n, kh, kw, stride, padding = shape
    torch.manual_seed(sum(shape[:8]))
    x = torch.randn(b, c, h, w)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    fs = factors(c, r, n, kh, kw)
    out = ops.cp_conv2d(x, *fs, stride, padding)
    assert_close_to_reference(out, x, fs, stride, padding)
    cl = layout == "channels_last" and c > 1 and h * w > 1
    assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    without_bias = ops.cp_conv2d(x, *fs[:4], None, stride, padding)
    assert torch.allclose(without_bias + fs[4][:, None, None], out, atol=1e-4, rtol=1e-5)


def test_non_contiguous_input_and_factors(isa):
    x = torch.randn(2, 9, 12, 21)[:, ::2, :, ::2]  # strided in C and W
    r, n = 11, 6
    u_in = torch.randn(5, r).t()  # [R, C] transposed
    k_v, k_h = torch.randn(r, 6)[:, ::2], torch.randn(3, r).t()
    u_out, bias = torch.randn(n, 2 * r)[:, ::2], torch.randn(2 * n)[::2]
    fs = (u_in, k_v, k_h, u_out, bias)
    assert_close_to_reference(ops.cp_conv2d(x, *fs, (1, 2), (1, 1)), x, fs, (1, 2), (1, 1))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (5, 2, 2), (2, 3, 0), (3, 1, 4)])
def test_many_row_blocks(isa, threads, kernel, stride, padding):
    # Tall images split into many row blocks; one thread walks consecutive blocks of an image
    # and reuses the input rows they share.
    x = torch.randn(3, 8, 160, 33)
    fs = factors(8, 30, 24, kernel, kernel)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for y in (x, x.to(memory_format=torch.channels_last)):
            out = ops.cp_conv2d(y, *fs, (stride, stride), (padding, padding))
            assert_close_to_reference(out, y, fs, (stride, stride), (padding, padding))
    finally:
        torch.set_num_threads(before)


def test_values_propagate_like_the_dense_convolution():
    x = torch.randn(1, 4, 6, 6)
    x[0, 1, 2, 3] = float("nan")
    fs = factors(4, 5, 3, 3, 3)
    out = ops.cp_conv2d(x, *fs, (1, 1), (1, 1))
    # Exactly the outputs whose receptive field holds the NaN are NaN.
    assert torch.equal(out[0, 0].isnan(), torch.zeros(6, 6, dtype=torch.bool).index_fill_(
        0, torch.tensor([1, 2, 3]), True) & torch.zeros(6, 6, dtype=torch.bool).index_fill_(
        1, torch.tensor([2, 3, 4]), True))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradients_match_the_reference(layout):
    x = torch.randn(2, 6, 7, 8, dtype=torch.float32)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    fs = factors(6, 5, 4, 3, 2)
    inputs = [t.clone().requires_grad_() for t in (x, *fs)]
    out = ops.cp_conv2d(*inputs, (2, 1), (1, 1))
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    ref_inputs = [t.detach().double().requires_grad_() for t in (x, *fs)]
    want = torch.autograd.grad(ops.cp_conv2d_reference(*ref_inputs, (2, 1), (1, 1)),
                               ref_inputs, grad.double())
    for g, wnt in zip(got, want, strict=True):
        assert g.shape == wnt.shape and g.dtype == torch.float32
        assert torch.allclose(g.double(), wnt, rtol=1e-4, atol=1e-4 * wnt.abs().max().item())


def test_gradcheck_in_float64_through_the_backward():
    # The backward is the composition's vector-Jacobian product; check it numerically on the
    # op's float32 forward is too coarse, so check the formula with double precision inputs
    # through the same backward function.
    from emokernels.ops.cp_conv2d import cp_backward

    class Ctx:
        needs_input_grad = (True,) * 6 + (False, False)
        geometry = ([1, 2], [1, 0])
        has_bias = True

    x = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    fs = factors(3, 4, 2, 3, 2, dtype=torch.float64)
    ctx = Ctx()
    ctx.saved_tensors = (x, *fs[:4])
    out = ops.cp_conv2d_reference(x, *fs, (1, 2), (1, 0))
    grad = torch.randn_like(out)
    got = cp_backward(ctx, grad)[:6]
    inputs = [t.clone().requires_grad_() for t in (x, *fs)]
    want = torch.autograd.grad(ops.cp_conv2d_reference(*inputs, (1, 2), (1, 0)), inputs, grad)
    for g, wnt in zip(got, want, strict=True):
        assert torch.allclose(g, wnt, atol=1e-10)


def test_opcheck():
    x = torch.randn(2, 5, 6, 7)
    torch.library.opcheck(torch.ops.emokernels.cp_conv2d.default,
                          (x, *factors(5, 4, 3, 3, 3), [1, 2], [1, 1]))
    torch.library.opcheck(torch.ops.emokernels.cp_conv2d.default,
                          (x.to(memory_format=torch.channels_last), *factors(5, 4, 3, 1, 3, False),
                           [2, 1], [0, 1]))


def test_torch_compile_fullgraph():
    x = torch.randn(1, 4, 9, 9)
    fs = factors(4, 6, 5, 3, 3)
    compiled = torch.compile(lambda *a: ops.cp_conv2d(*a, (1, 1), (1, 1)) * 2,
                             fullgraph=True, backend="aot_eager")
    assert torch.allclose(compiled(x, *fs), 2 * ops.cp_conv2d(x, *fs, (1, 1), (1, 1)))


def _good():
    return [torch.randn(1, 4, 5, 5), *factors(4, 3, 2, 3, 3), (1, 1), (1, 1)]


@pytest.mark.parametrize("index, value, message", [
    (0, torch.randn(4, 5, 5), "x must be 4-D"),
    (0, torch.randn(1, 4, 5, 5, dtype=torch.float64), "x must be one of float32"),
    (1, torch.randn(3, 5), "u_in is"),
    (2, torch.randn(2, 3), "disagree on the rank"),
    (4, torch.randn(2, 4), "disagree on the rank"),
    (3, torch.randn(3, 3, dtype=torch.float64), "k_h must have x's dtype"),
    (5, torch.randn(3), "bias has 3 entries"),
    (5, torch.randn(2, 1), "bias must be 1-D"),
    (6, (0, 1), "stride must be in"),
    (7, (-1, 0), "padding must be in"),
    (7, (0, 0, 0), "2 entries"),
    (7, (2**31, 0), "padding must be in"),
    (0, torch.randn(1, 4, 2, 5), "does not fit the padded"),
    (0, torch.randn(0, 4, 5, 5), "must be non-empty"),
])
def test_bad_input(index, value, message):
    args = _good()
    args[index] = value
    if index == 0 and message == "does not fit the padded":
        args[7] = (0, 0)
    with pytest.raises(RuntimeError, match=message):
        ops.cp_conv2d(*args)
    with pytest.raises(RuntimeError, match=message):
        ops.cp_conv2d(*[a.to("meta") if isinstance(a, torch.Tensor) else a for a in args])


def test_cpu_path_is_reported():
    path = torch.ops.emokernels.cpu_kernel_path("cp_conv2d", "float32", 1, 1, 1)
    assert path in ("avx512f", "avx2", "portable")
