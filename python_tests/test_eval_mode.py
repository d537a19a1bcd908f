"""Eval mode: one gradient rule for every layer, caches that follow every weight change, and
input checks on every path."""

import pytest
import torch
from torch import nn

import emokernels as ek
from emokernels import ops


def layers() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "XnorConv2d": ek.XnorConv2d(6, 5, 3, padding=1),
        "XnorConv2d-K": ek.XnorConv2d(6, 5, 3, padding=1, scale_activations=True),
        "BinaryConv2d": ek.BinaryConv2d(16, 5, 3, padding=1),
        "XnorLinear": ek.XnorLinear(40, 7),
        "BinaryLinear": ek.BinaryLinear(40, 7),
        "BinaryInputConv2d": ek.BinaryInputConv2d(6, 5, 3, padding=1),
        "BinaryInputLinear": ek.BinaryInputLinear(40, 7),
    }


def sample(layer: nn.Module, batch: int = 40) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        return torch.randn(batch, layer.in_channels, 6, 5)
    return torch.randn(batch, layer.in_features)


KINDS = list(layers())
PACKED_OPS = ("bwn_gemm", "bwn_conv2d", "xnor_gemm_scaled")


@pytest.fixture
def op_calls(monkeypatch):
    """Counts the calls of the packed kernels the layers make."""
    calls = []
    for name in PACKED_OPS:
        real = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _real=real, _n=name, **k: (calls.append(_n),
                                                                               _real(*a, **k))[1])
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_eval_without_autograd_runs_packed_kernels(kind, op_calls):
    layer = layers()[kind].eval()
    with torch.no_grad():
        layer(sample(layer))
    assert op_calls, f"{kind} did not run a packed kernel"


@pytest.mark.parametrize("kind", KINDS)
def test_eval_input_gradients_are_train_modes(kind, op_calls):
    """Where autograd needs a gradient, eval mode computes the float form: the same outputs
    and train mode's (straight-through) gradients, for every layer."""
    layer = layers()[kind]
    x = sample(layer).requires_grad_()
    grad = None
    outs, grads = [], []
    for mode in (True, False):
        layer.train(mode)
        out = layer(x)
        grad = torch.randn_like(out) if grad is None else grad
        outs.append(out)
        grads.append(torch.autograd.grad(out, [x, *layer.parameters()], grad))
    assert not op_calls
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", [k for k in KINDS if "Input" not in k])
def test_frozen_layers_give_input_gradients(kind):
    layer = layers()[kind].eval()
    x = sample(layer).requires_grad_()
    out = layer(x)
    grad = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, grad)
    layer.freeze()
    assert layer.bias is None or not layer.bias.requires_grad
    out_frozen = layer(x)
    (got,) = torch.autograd.grad(out_frozen, x, grad)
    torch.testing.assert_close(out_frozen, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", [k for k in KINDS if "Input" not in k])
def test_frozen_layers_run_packed_without_no_grad(kind, op_calls):
    layer = layers()[kind].eval()
    layer.freeze()
    out = layer(sample(layer))
    assert op_calls and not out.requires_grad


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_under_inference_mode_repacks(kind):
    """Inference tensors carry no version counter: the cache is cleared on load instead."""
    source = layers()[kind]
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn_like(p))
    with torch.inference_mode():
        layer = layers()[kind].eval()
        x = sample(layer)
        stale = layer(x)
        layer.load_state_dict(source.state_dict())
        got = layer(x)
        expected = source.eval()(x)
    assert not torch.equal(stale, expected)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_wrong_input_shapes_are_errors(kind, train):
    layer = layers()[kind].train(train)
    good = sample(layer)
    bad = [good[:, :-1], good.unsqueeze(0)] if good.dim() == 4 else [good[:, :-1]]
    for x in bad:
        with pytest.raises(ValueError, match="expected input"), torch.no_grad():
            layer(x)


def test_float64_xnor_linear_eval_equals_train():
    layer = ek.XnorLinear(64, 5).double()
    x = torch.randn(3, 64, dtype=torch.float64) * 1e-300  # rounds to +-0 in float32
    out_train = layer.train()(x)
    with torch.no_grad():
        out_eval = layer.eval()(x)
    # Signs taken in float32 would all be +1 here: errors of order 1. The packed epilogue
    # runs in float32, so agreement is to float32 rounding.
    torch.testing.assert_close(out_eval, out_train, rtol=1e-6, atol=1e-6)


def bwn_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 64, 40), nn.ReLU(), nn.Linear(40, 5))
    return ek.convert(model, "bwn", keep_first_last=False).eval()


@pytest.mark.parametrize("frozen", [False, True])
def test_compile_of_an_eval_bwn_model_needs_no_no_grad(frozen):
    model = bwn_model()
    if frozen:
        ek.freeze(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["xnor", "bwn"])
def test_export_of_a_frozen_model(method):
    model = ek.convert(bwn_model(), method) if method == "xnor" else bwn_model()
    ek.freeze(model)
    x = torch.randn(2, 3, 8, 8)
    exported = torch.export.export(model, (x,))
    names = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("emokernels" in name for name in names)
    x2 = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(exported.module()(x2), model(x2))


@pytest.mark.parametrize("cls", [ek.BinaryConv2d, ek.XnorConv2d, ek.BinaryInputConv2d])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kernel, dilation", [((4, 1), ((2**64 - 1) // 3, 1)),
                                              ((5, 1), (2**62, 1)), ((3, 3), (1, 1))])
def test_kernel_larger_than_input_is_an_error(cls, train, kernel, dilation):
    layer = cls(16, 8, kernel, dilation=dilation).train(train)
    with pytest.raises(ValueError, match="smaller than the kernel"), torch.no_grad():
        layer(torch.randn(1, 16, 2, 7))
