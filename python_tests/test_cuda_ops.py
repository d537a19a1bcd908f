"""Every op on the GPU against the same op on the CPU, and the layers' eval == train on CUDA.
Skipped without a CUDA device (the CUDA kernels also run on the CPU, emulated, in
test_cuda_kernels_emulated.py)."""

import pytest
import torch

import emokernels as ek
from emokernels import ops
from emokernels.models import vgg_s

from .test_fuse import randomize_norms
from .test_pack_channels import random_bounds as channel_bounds
from .test_pack_channels import special_values
from .test_xnor_gemm_sign import random_bounds

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.ops.emokernels.cuda_compiled()),
    reason="needs a CUDA device and the CUDA build")]

# (300, 260, 4088): the tensor-core XNOR tiles' 16-byte copies around their 3-stage ring (8
# slices), a masked last word, 3 x 3 tiles; (200, 130, 4111): the same with 4-byte copies.
SHAPES = [(1, 1, 1), (1, 4096, 700), (3, 9, 33), (17, 31, 64), (64, 65, 1000), (200, 130, 4111),
          (300, 260, 4088)]


def both(*tensors):
    return tensors, tuple(t.cuda() for t in tensors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 31), (5, 64), (2, 3, 1000)])
def test_pack_bits(dtype, shape):
    x = torch.randn(shape).to(dtype)
    x.view(-1)[::7] = 0.0
    assert torch.equal(ops.pack_bits(x.cuda()).cpu(), ops.pack_bits(x))


def test_pack_channels():
    gen = torch.Generator().manual_seed(0)
    x = special_values(torch.randn(3, 70, 9, 30, generator=gen), gen)
    lower, upper = channel_bounds(70, gen)
    got = ops.pack_channels(x.cuda(), lower.cuda(), upper.cuda())
    assert torch.equal(got.cpu(), ops.pack_channels(x, lower, upper))


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_xnor_gemm_scaled_and_sign(m, n, k):
    a, b = ops.pack_bits(torch.randn(m, k)), ops.pack_bits(torch.randn(n, k))
    a[:, -1] |= -(1 << 30)  # garbage past k must not count
    b[:, -1] |= -(1 << 31)
    assert torch.equal(ops.xnor_gemm(a.cuda(), b.cuda(), k).cpu(), ops.xnor_gemm(a, b, k))
    scale, bias = torch.randn(n), torch.randn(n)
    offset = torch.randint(-5, 5, (1, n), dtype=torch.int32)
    cpu = ops.xnor_gemm_scaled(a, b, k, scale, bias, offset)
    gpu = ops.xnor_gemm_scaled(a.cuda(), b.cuda(), k, scale.cuda(), bias.cuda(), offset.cuda())
    assert torch.equal(gpu.cpu(), cpu)  # the same float ops in the same order
    bounds = random_bounds(n, k)
    gpu = ops.xnor_gemm_sign(a.cuda(), b.cuda(), k, bounds.cuda(), offset.cuda())
    assert torch.equal(gpu.cpu(), ops.xnor_gemm_sign(a, b, k, bounds, offset))


def test_xnor_gemm_rows_not_16_byte_aligned():
    """Rows of a multiple of 4 words that start 4 bytes past a 16-byte boundary: the tensor-core
    kernel must take its 4-byte copies (16-byte ones would fault)."""
    a, b = ops.pack_bits(torch.randn(70, 2040)), ops.pack_bits(torch.randn(40, 2040))
    flat = torch.empty(a.numel() + 1, dtype=torch.int32, device="cuda")
    shifted = flat[1:].view(a.shape)
    shifted.copy_(a)
    assert shifted.data_ptr() % 16 != 0
    assert torch.equal(ops.xnor_gemm(shifted, b.cuda(), 2040).cpu(), ops.xnor_gemm(a, b, 2040))


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bwn_gemm(m, n, k, dtype):
    x, w, alpha = torch.randn(m, k).to(dtype), torch.randn(n, k), torch.rand(n) + 0.1
    bits = ops.pack_bits(w)
    ref = x.double() @ (alpha.double()[:, None] * torch.where(w >= 0, 1.0, -1.0).double()).T
    out = ops.bwn_gemm(x.cuda(), bits.cuda(), alpha.cuda(), k).cpu()
    assert out.dtype == dtype
    bound = 1e-6 * (x.double().abs() @ alpha.double()[None, :].expand(k, -1)) + 1e-6
    if dtype != torch.float32:
        bound = bound + ref.abs() * 2**-7
    assert ((out.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("channels, kernel, stride, dilation", [
    (16, (3, 3), (1, 1), (1, 1)), (5, (2, 3), (2, 1), (1, 2)), (37, (5, 5), (2, 2), (1, 1))])
def test_bwn_conv2d(channels, kernel, stride, dilation):
    image = torch.randn(2, 13, 12, channels)
    w, alpha = torch.randn(9, channels, *kernel), torch.rand(9) + 0.1
    bits = ops.pack_bits(w.permute(0, 2, 3, 1).reshape(9, -1))
    cpu = ops.bwn_conv2d(image, bits, alpha, kernel, stride, dilation)
    gpu = ops.bwn_conv2d(image.cuda(), bits.cuda(), alpha.cuda(), kernel, stride, dilation)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("block", [1, 16])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_hashed_linear(m, n, k, block):
    nb = max(1, n * k // 8)
    x, buckets, bias, grad = torch.randn(m, k), torch.randn(nb), torch.randn(n), torch.randn(m, n)
    cpu = ops.hashed_linear(x, buckets, n, 11, block, bias)
    gpu = ops.hashed_linear(x.cuda(), buckets.cuda(), n, 11, block, bias.cuda())
    # two float32 sums of k products in different orders: rounding grows like sqrt(k)
    assert torch.allclose(gpu.cpu(), cpu, atol=2e-5 * k**0.5, rtol=1e-5)
    want = torch.ops.emokernels.hashed_linear_backward(grad, x, buckets, 11, block, [True, True],
                                                       False)
    runs = []
    for deterministic in (False, True, True):
        got = torch.ops.emokernels.hashed_linear_backward(
            grad.cuda(), x.cuda(), buckets.cuda(), 11, block, [True, True], deterministic)
        for g, w in zip(got, want, strict=True):
            assert torch.allclose(g.cpu(), w, atol=1e-3, rtol=1e-4)
        runs.append(got[1])
    assert torch.equal(runs[1], runs[2])  # the fixed-point sums do not depend on the order


@pytest.mark.parametrize("method", ["xnor", "bwn", "binary-activations"])
def test_layers_eval_equals_train_on_cuda(method):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 48, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(48 * 64, 40),
                              torch.nn.ReLU(), torch.nn.Linear(40, 5))
    model = ek.convert(net, method).cuda()
    x = torch.randn(40, 3, 8, 8, device="cuda")
    float_out = model.train()(x)
    with torch.no_grad():
        packed_out = model.eval()(x)
    if method == "xnor":
        assert torch.equal(packed_out, float_out)
    else:
        torch.testing.assert_close(packed_out, float_out, rtol=1e-4, atol=1e-4)


def test_optimized_xnor_net_equals_unfused_on_cuda():
    """The binary-between-layers model (xnor_gemm_sign, pack_channels, pooling on bits) built
    and run on the GPU equals the unfused eval model there."""
    torch.manual_seed(0)
    model = randomize_norms(ek.convert(vgg_s(8, 64, binary_inputs=True, fc_width=40), "xnor"))
    model = model.cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad():
        want = model(x)
        fused = ek.optimize_for_inference(model, x[:1])
        assert torch.equal(fused(x), want)
