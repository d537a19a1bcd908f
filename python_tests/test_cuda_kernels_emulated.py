"""The package's CUDA kernels (csrc/cuda), run on the CPU under the emulation of CUDA
(python_tests/cuda_emulation), against the CPU ops and references. What the GPU tests
(test_cuda_ops.py) check on a device, these check on every CI run."""

import contextlib

import pytest
import torch

import emokernels as ek
from emokernels import ops
from emokernels.models import vgg_s

from . import cuda_emulation
from .conftest import forced_isa, signs
from .test_fuse import randomize_norms
from .test_pack_channels import random_bounds as channel_bounds
from .test_pack_channels import special_values
from .test_xnor_gemm_sign import random_bounds


@pytest.fixture(scope="module")
def cuda_ops():
    return cuda_emulation.load_cuda_ops()


@contextlib.contextmanager
def on_emulated_cuda(cuda_ops):
    """Every torch.ops.emokernels op (so every ops wrapper and layer) runs the CUDA kernels."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.ops, "emokernels", cuda_ops)
        yield


def portable(fn, *args):
    """The CPU portable path's result: the sum order the CUDA tiles reproduce."""
    with forced_isa("portable"):
        return fn(*args)


GEMM_SHAPES = [(1, 1, 1), (2, 3, 31), (5, 7, 32), (4, 70, 33), (17, 9, 300), (70, 65, 97)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 31), (2, 3, 64), (4, 97)])
def test_pack_bits(cuda_ops, dtype, shape):
    x = torch.randn(shape, dtype=torch.float64)
    flat = x.view(-1)
    flat[::5] = 0.0
    flat[1::7] = -0.0
    flat[2::11] = float("nan")
    if dtype == torch.float64:
        flat[3::13] = -1e-300
    x = x.to(dtype)
    assert torch.equal(cuda_ops.pack_bits(x), portable(ops.pack_bits, x))
    assert torch.equal(cuda_ops.pack_bits(x.transpose(0, -1)),
                       portable(ops.pack_bits, x.transpose(0, -1)))


def garbage_bits(m: int, k: int) -> torch.Tensor:
    bits = ops.pack_bits(torch.randn(m, k))
    if k % 32:
        bits[:, -1] |= ~((1 << (k % 32)) - 1)  # past k: must not count
    return bits


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 33, 5, 7), (1, 70, 9, 30)])
def test_pack_channels(cuda_ops, shape):
    gen = torch.Generator().manual_seed(shape[1])
    x = special_values(torch.randn(shape, generator=gen), gen)
    lower, upper = channel_bounds(shape[1], gen)
    want = portable(ops.pack_channels, x, lower, upper)
    assert torch.equal(cuda_ops.pack_channels(x, lower, upper), want)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(cuda_ops.pack_channels(cl, lower, upper), want)


@pytest.fixture(params=["cores", "tensor-cores"])
def xnor_path(request, monkeypatch):
    """Runs the test on both CUDA paths of the XNOR GEMM."""
    monkeypatch.setenv("EMOKERNELS_CUDA_XNOR", request.param)
    return request.param


# (70, 33, 2000): 4-byte copies (63 words a row) over 4 slices of the 3-stage ring; (130, 129,
# 2020): 16-byte copies, a masked last word, several tiles each way.
@pytest.mark.parametrize("m, n, k", GEMM_SHAPES + [(33, 41, 256), (16, 8, 513), (70, 33, 2000),
                                                   (130, 129, 2020)])
def test_xnor_gemm_scaled_and_sign(cuda_ops, xnor_path, m, n, k):
    a, b = garbage_bits(m, k), garbage_bits(n, k)
    assert torch.equal(cuda_ops.xnor_gemm(a, b, k), portable(ops.xnor_gemm, a, b, k))
    scale, bias = torch.randn(n), torch.randn(n)
    offset = torch.randint(-9, 9, (1, n), dtype=torch.int32)
    table = torch.randint(-9, 9, (3, n), dtype=torch.int32)
    index = torch.randint(0, 3, (m,), dtype=torch.int32)  # a row of the table per row
    offsets = [(None, None), (offset, None), (table, index)]
    for args in [(scale, None, None, None), *((scale, bias, *o) for o in offsets[1:])]:
        want = portable(ops.xnor_gemm_scaled, a, b, k, *args)
        assert torch.equal(cuda_ops.xnor_gemm_scaled(a, b, k, *args), want)
    bounds = random_bounds(n, k)
    for rows in offsets:
        want = portable(ops.xnor_gemm_sign, a, b, k, bounds, *rows)
        assert torch.equal(cuda_ops.xnor_gemm_sign(a, b, k, bounds, *rows), want)


def test_xnor_tensor_cores_copy_rows_off_16_byte_boundaries(cuda_ops, monkeypatch):
    """Rows of a multiple of 4 words starting 4 bytes past a 16-byte boundary: 4-byte copies
    (the emulated cp.async, like the hardware, refuses a misaligned 16-byte one)."""
    monkeypatch.setenv("EMOKERNELS_CUDA_XNOR", "tensor-cores")
    a, b = garbage_bits(20, 2040), garbage_bits(9, 2040)
    shifted = torch.empty(a.numel() + 1, dtype=torch.int32)[1:].view(a.shape)
    shifted.copy_(a)
    assert shifted.data_ptr() % 16 != 0
    assert torch.equal(cuda_ops.xnor_gemm(shifted, b, 2040), portable(ops.xnor_gemm, a, b, 2040))


@pytest.mark.parametrize("m, n, k", GEMM_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bwn_gemm(cuda_ops, m, n, k, dtype):
    x = torch.randn(m, k).to(dtype)
    w, alpha = torch.randn(n, k), torch.rand(n) + 0.1
    out = cuda_ops.bwn_gemm(x, ops.pack_bits(w), alpha, k)
    if m > 4:  # the tiles sum in k order, like the portable path: the same bits
        assert torch.equal(out, portable(ops.bwn_gemm, x, ops.pack_bits(w), alpha, k))
    ref = x.double() @ (alpha.double()[:, None] * signs(w)).T
    bound = 1e-6 * (x.double().abs().sum(1, keepdim=True) * alpha.double()) + 1e-6
    if dtype != torch.float32:
        bound = bound + ref.abs() * 2**-7
    assert out.dtype == dtype and ((out.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("m", [1, 3, 20])  # the GEMV (m <= 4) and the tiles
def test_bwn_gemm_non_finite_rows(cuda_ops, m):
    x = torch.randn(m, 70)
    x[0, 3] = float("inf")
    if m > 1:
        x[1, :2] = torch.tensor([1.5e38, -1.5e38])
        x[2, 5] = float("nan")
    w = torch.randn(40, 70)
    out = cuda_ops.bwn_gemm(x, ops.pack_bits(w), torch.ones(40), 70)
    ref = (x.double() @ signs(w).T).float()
    assert torch.equal(out.isnan(), ref.isnan())
    assert torch.equal(out.isinf(), ref.isinf()) and torch.equal(out[ref.isinf()], ref[ref.isinf()])


@pytest.mark.parametrize("channels, kernel, stride, dilation, size", [
    (16, (3, 3), (1, 1), (1, 1), (9, 8)), (5, (2, 3), (2, 1), (1, 2), (9, 10)),
    (37, (1, 1), (1, 1), (1, 1), (4, 5)), (32, (3, 2), (1, 2), (2, 1), (10, 9))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bwn_conv2d(cuda_ops, channels, kernel, stride, dilation, size, dtype):
    image = torch.randn(2, *size, channels).to(dtype)
    w, alpha = torch.randn(11, channels, *kernel), torch.rand(11) + 0.1
    bits = ops.pack_bits(w.permute(0, 2, 3, 1).reshape(11, -1))
    out = cuda_ops.bwn_conv2d(image, bits, alpha, kernel, stride, dilation)
    want = portable(ops.bwn_conv2d, image, bits, alpha, kernel, stride, dilation)
    assert torch.equal(out, want)


HASHED_SHAPES = [(1, 1, 1, 1), (1, 37, 19, 11), (3, 70, 65, 1000), (17, 100, 9, 5),
                 (70, 33, 66, 97)]


@pytest.mark.parametrize("block", [1, 8])
@pytest.mark.parametrize("m, k, n, nb", HASHED_SHAPES)
def test_hashed_linear(cuda_ops, m, k, n, nb, block):
    x, buckets, bias, grad = torch.randn(m, k), torch.randn(nb), torch.randn(n), torch.randn(m, n)
    out = cuda_ops.hashed_linear(x, buckets, n, 5, block, bias)
    assert torch.allclose(out, ops.hashed_linear(x, buckets, n, 5, block, bias), atol=1e-4)
    want = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 5, block, [True, True],
                                                       False)
    for deterministic in (False, True):
        got = cuda_ops.hashed_linear_backward(grad, x, buckets, 5, block, [True, True],
                                              deterministic)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and torch.allclose(g, w, atol=1e-4, rtol=1e-5)


def test_deterministic_bucket_gradient_does_not_depend_on_the_thread_order(cuda_ops,
                                                                          monkeypatch):
    x, buckets, grad = torch.randn(40, 130), torch.randn(7), torch.randn(40, 70)
    runs = []
    for seed in (1, 2, 3):
        monkeypatch.setenv(cuda_emulation.SEED_ENV, str(seed))
        runs.append(cuda_ops.hashed_linear_backward(grad, x, buckets, 0, 1, [False, True], True)[1])
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_deterministic_bucket_gradient_needs_finite_values(cuda_ops):
    x, grad = torch.randn(4, 9), torch.randn(4, 3)
    x[1, 2] = float("inf")
    with pytest.raises(RuntimeError, match="finite"):
        cuda_ops.hashed_linear_backward(grad, x, torch.randn(5), 0, 1, [False, True], True)


def test_results_do_not_depend_on_the_thread_order(cuda_ops, monkeypatch):
    a, b = garbage_bits(70, 300), garbage_bits(65, 300)
    x, w = torch.randn(70, 300), garbage_bits(65, 300)
    runs = []
    for seed in (1, 2, 3):
        monkeypatch.setenv(cuda_emulation.SEED_ENV, str(seed))
        runs.append((cuda_ops.xnor_gemm(a, b, 300), cuda_ops.bwn_gemm(x, w, torch.ones(65), 300)))
    for other in runs[1:]:
        assert all(torch.equal(p, q) for p, q in zip(runs[0], other, strict=True))


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(3, 2, dtype=torch.int32), torch.zeros(4, 3, dtype=torch.int32), 64),
     "same number of words"),
    ((torch.zeros(3, 2, dtype=torch.int32), torch.zeros(4, 2, dtype=torch.int32), 0),
     r"k must be in \[1"),
])
def test_bad_input_is_the_cpu_error(cuda_ops, args, message):
    with pytest.raises(RuntimeError, match=message):
        cuda_ops.xnor_gemm(*args)


def net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(32, 37, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(37 * 16, 40),
                               torch.nn.ReLU(), torch.nn.Linear(40, 5))


def test_a_grid_beyond_cuda_limits_is_an_error(cuda_ops, xnor_path):
    """Weight rows tile the grid's y extent (65535 blocks at most): refused before launch."""
    a = torch.zeros(1, 1, dtype=torch.int32)
    b = torch.zeros(128 * 65535 + 1, 1, dtype=torch.int32)  # the tensor-core tiles: 128 rows
    with pytest.raises(RuntimeError, match="beyond CUDA's limits"):
        cuda_ops.xnor_gemm(a, b, 32)


def test_xnor_path_must_be_known(cuda_ops, monkeypatch):
    monkeypatch.setenv("EMOKERNELS_CUDA_XNOR", "fast")
    bits = ops.pack_bits(torch.randn(3, 40))
    with pytest.raises((RuntimeError, ValueError), match="not one of: cores, tensor-cores"):
        cuda_ops.xnor_gemm(bits, bits, 40)


@pytest.mark.parametrize("method", ["xnor", "bwn", "binary-activations"])
def test_layers_eval_equals_train(cuda_ops, xnor_path, method):
    model = ek.convert(net(), method, keep_first_last=False)
    x = torch.randn(6, 3, 8, 8)
    float_out = model.train()(x)
    with on_emulated_cuda(cuda_ops), torch.no_grad():
        packed_out = model.eval()(x)
    if method == "xnor":
        assert torch.equal(packed_out, float_out)
    else:
        torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)



def test_optimized_xnor_net_equals_unfused(cuda_ops, xnor_path):
    """The binary-between-layers model on the CUDA kernels: xnor_gemm_sign, pack_channels."""
    torch.manual_seed(0)
    model = randomize_norms(ek.convert(vgg_s(8, 64, binary_inputs=True, fc_width=40), "xnor"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        fused = ek.optimize_for_inference(model, x[:1])
        with on_emulated_cuda(cuda_ops):
            assert torch.equal(fused(x), want)
