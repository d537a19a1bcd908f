"""A binary network that stays binary between layers: ``optimize_for_inference``.

Between two XNOR layers the float activations only ever feed the next layer's sign. The first
layer's epilogue ``float(dot) * alpha + bias``, the per-channel monotone modules after it
(BatchNorm in eval mode, ReLU-like clamps, identities) and the sign together are a monotone
function of the integer dot of each output channel, so they are exactly one interval of dots:
the interval is found by evaluating those very modules on candidate dots (a binary search per
channel), and ``ops.xnor_gemm_sign`` writes the next layer's packed input directly. A max-pool
between them runs on the packed bits (the sign of a max is the OR of the signs; the AND where
the modules after the pool decrease, e.g. BatchNorm with a negative scale).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from . import ops
from .nn.binary_conv import XnorConv2d
from .nn.binary_linear import XnorLinear
from .nn.packed_chain import PackChannels, PackedMaxPool2d, PackedXnorConv2d
from .nn.packed_weight import row_blocks
from .sign_intervals import NotMonotone, check_modules, dot_interval, value_interval

# Per-channel monotone modules with no conditions (see _pointwise for the others).
_POINTWISE = (nn.ReLU, nn.Identity, nn.Dropout)


def optimize_for_inference(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """A copy of the eval-mode ``model`` in which chains of XNOR layers stay binary.

    In every ``nn.Sequential`` of ``model``, an ``XnorConv2d`` / ``XnorLinear`` (without
    ``scale_activations``) followed by per-channel monotone modules (``BatchNorm1d/2d`` in eval
    mode with running statistics, ``ReLU``, ``ReLU6``, ``Hardtanh``, ``LeakyReLU`` with a
    slope >= 0, ``Identity``, ``Dropout``), at most one ``MaxPool2d`` among them, then
    optionally a ``Flatten``, and then another such XNOR layer, becomes one
    :class:`~emokernels.nn.packed_chain.PackedXnorConv2d` writing packed signs, a
    :class:`~emokernels.nn.packed_chain.PackedMaxPool2d` for the pooling, and the next layer
    reading those bits. The per-channel modules (with at most one ``MaxPool2d``) right before
    the first XNOR convolution of a chain, when they include a BatchNorm or a pool, become one
    interval test per channel (:class:`~emokernels.nn.packed_chain.PackChannels`) and a pool
    on bits. On the CPU the result equals the unfused eval model exactly (the same float
    operations on the same values decide every sign; tested), for activations of magnitude
    below 2^64 before those float modules. On CUDA the same construction applies, but
    BatchNorm's GPU kernel is picked per shape and layout, so equality there is not verified.

    Args:
        model: in eval mode (every submodule). Its modules and tensors are shared with the
            result, not copied, but the result is a snapshot: the intervals, the pools' masks and
            a flattened linear layer's reordered weights are computed now, so later changes to
            ``model``'s weights or statistics do not reach it. Rewritten ``nn.Sequential``s have
            fewer children than the originals (index them by name, not position); subclasses of
            ``nn.Sequential`` and other containers keep their class and ``forward``.
        example_input: one input the model accepts (a batch of 1 is enough), float32: it is run
            once to learn the map size each flattened linear layer sees. The result then takes
            inputs of that size (convolution chains take any size).

    Returns:
        The optimized model (``model`` itself is unchanged).
    """
    if any(m.training for m in model.modules()):
        raise ValueError("optimize_for_inference: call model.eval() first (BatchNorm must use "
                         "its running statistics, Dropout must be off)")
    if not isinstance(example_input, torch.Tensor) or example_input.dtype != torch.float32:
        raise TypeError("optimize_for_inference: example_input must be a float32 tensor")
    shapes = _input_shapes(model, example_input)
    return _rewrite(model, shapes)


def _input_shapes(model: nn.Module, example: torch.Tensor) -> dict[int, tuple | None]:
    """``{id(module): input shape}`` of one forward (None for a module called with two)."""
    shapes: dict[int, tuple | None] = {}

    def record(module, args):
        if args and isinstance(args[0], torch.Tensor):
            shape = tuple(args[0].shape)
            shapes[id(module)] = shape if shapes.get(id(module), shape) == shape else None

    handles = [m.register_forward_pre_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _rewrite(module: nn.Module, shapes: dict) -> nn.Module:
    children = OrderedDict((name, _rewrite(child, shapes))
                           for name, child in module.named_children())
    # Only a plain Sequential runs its children in order and nothing else.
    if type(module) is nn.Sequential:
        return nn.Sequential(_fuse_sequence(list(children.items()), shapes))
    if all(children[name] is child for name, child in module.named_children()):
        return module
    new = copy.copy(module)
    new._modules = children
    return new


@dataclass
class _Link:
    """Producer ``items[first]`` feeds consumer ``items[last]`` through ``items[first+1:last]``,
    or for a ``head``, float modules ``items[first:last]`` feed the consumer."""

    first: int
    last: int
    head: bool = False
    pre_pool: list = field(default_factory=list)
    pool: nn.MaxPool2d | None = None
    post_pool: list = field(default_factory=list)
    flattened: tuple | None = None  # the [C, H, W] map a Flatten turns into a linear's input
    # Producer links: int32 bounds [2, O] of the dots; heads: float32 (lower [C], upper [C]).
    intervals: torch.Tensor | tuple | None = None


def _fusable(module: nn.Module) -> bool:
    return isinstance(module, (XnorConv2d, XnorLinear)) and not module.scale_activations


def _pointwise(module: nn.Module) -> bool:
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return module.running_mean is not None and not module.training
    if isinstance(module, nn.LeakyReLU):
        return module.negative_slope >= 0
    if isinstance(module, nn.Hardtanh):
        return module.min_val <= module.max_val
    return isinstance(module, _POINTWISE)


def _link_from(items: list, first: int, shapes: dict) -> _Link | None:
    """The link that starts at ``items[first]``, if the modules after it make one."""
    producer = items[first][1]
    if not _fusable(producer):
        return None
    if isinstance(producer, XnorLinear) and len(shapes.get(id(producer)) or ()) != 2:
        return None  # a linear layer over the last dim of a map: no packed layout here
    link = _Link(first, -1)
    for j in range(first + 1, len(items)):
        module = items[j][1]
        if _fusable(module):
            link.last = j
            return link if _consumer_fits(producer, module, link, shapes) else None
        if link.flattened is not None:
            return None
        if _pointwise(module):
            (link.post_pool if link.pool is not None else link.pre_pool).append(module)
        elif (isinstance(module, nn.MaxPool2d) and link.pool is None
              and not module.return_indices and isinstance(producer, XnorConv2d)):
            link.pool = module
        elif isinstance(module, nn.Flatten) and isinstance(producer, XnorConv2d):
            shape = shapes.get(id(module))
            if module.start_dim != 1 or module.end_dim != -1 or shape is None or len(shape) != 4:
                return None
            link.flattened = shape[1:]
        else:
            return None
    return None


def _consumer_fits(producer: nn.Module, consumer: nn.Module, link: _Link, shapes: dict) -> bool:
    """Whether ``consumer`` reads ``producer``'s output in the packed layout it writes."""
    channels = producer.out_channels if isinstance(producer, XnorConv2d) else producer.out_features
    if isinstance(consumer, XnorConv2d):
        return isinstance(producer, XnorConv2d) and consumer.in_channels == channels
    shape = shapes.get(id(consumer))
    if shape is None or len(shape) != 2:
        return False
    if isinstance(producer, XnorLinear):
        return consumer.in_features == channels
    return link.flattened is not None and link.flattened[0] == channels


def _head_before(items: list, last: int, shapes: dict) -> _Link | None:
    """The per-channel modules (at most one max-pool among them) right before a convolution
    that reads float input, if they include a BatchNorm or a pool: they and the sign become
    one interval test per channel and a pool on bits."""
    consumer = items[last][1]
    if not isinstance(consumer, XnorConv2d):
        return None
    run: list = []
    first = last
    while first > 0:
        module = items[first - 1][1]
        is_pool = isinstance(module, nn.MaxPool2d) and not module.return_indices
        if not (_pointwise(module) or is_pool) or (is_pool and any(
                isinstance(m, nn.MaxPool2d) for m in run)):
            break
        if isinstance(module, nn.BatchNorm1d) or (
                isinstance(module, nn.BatchNorm2d) and module.num_features != consumer.in_channels):
            break
        run.insert(0, module)
        first -= 1
    shape = shapes.get(id(items[first][1])) if run else None
    if shape is None or len(shape) != 4 or shape[1] != consumer.in_channels or not any(
            isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)) for m in run):
        return None
    link = _Link(first, last, head=True)
    for module in run:
        if isinstance(module, nn.MaxPool2d):
            link.pool = module
        else:
            (link.post_pool if link.pool is not None else link.pre_pool).append(module)
    return link


def _with_intervals(items: list, link: _Link | None) -> _Link | None:
    """``link`` with its sign intervals, or None where its modules' sign is not one interval
    (those modules then stay as they are: the result is still exact)."""
    if link is None:
        return None
    modules = [*link.pre_pool, *link.post_pool]
    try:
        if link.head:
            consumer = items[link.last][1]
            check_modules(modules, {})
            link.intervals = value_interval(modules, consumer.in_channels, _device_of(consumer))
        else:
            link.intervals = _bounds(items[link.first][1], link)
    except NotMonotone:
        return None
    return link


def _fuse_sequence(items: list[tuple[str, nn.Module]], shapes: dict) -> OrderedDict:
    links: dict[int, _Link] = {}
    i = 0
    while i < len(items):
        link = _with_intervals(items, _link_from(items, i, shapes))
        if link is None:
            i += 1
            continue
        links[i] = link
        i = link.last  # the consumer may produce the next link
    consumers = {link.last: link for link in links.values()}
    for j in [j for j, (_, m) in enumerate(items) if _fusable(m) and j not in consumers]:
        head = _with_intervals(items, _head_before(items, j, shapes))
        if head is not None:
            links[head.first] = consumers[j] = head
    out: OrderedDict = OrderedDict()
    i = 0
    while i < len(items):
        name, module = items[i]
        link = links.get(i)
        if link is not None and link.head:
            channels = items[link.last][1].in_channels
            lower, upper = link.intervals
            # A run that starts with its pool: the pool keeps its name, after the signs.
            out[name if module is not link.pool else f"{name}_signs"] = PackChannels(lower,
                                                                                    upper)
            if link.pool is not None:
                out[_pool_name(items, link)] = _packed_pool(link, channels, lower.device)
            i = link.last
            continue
        if link is None and i not in consumers:
            out[name] = module
            i += 1
            continue
        out[name] = _packed_layer(module, link, consumers.get(i))
        if link is None:
            i += 1
            continue
        if link.pool is not None:
            bounds = out[name].bounds
            out[_pool_name(items, link)] = _packed_pool(link, bounds.shape[1], bounds.device)
        i = link.last
    return out


def _device_of(module: nn.Module) -> torch.device:
    return next(t.device for t in (*module.parameters(), *module.buffers()))


def _pool_name(items: list, link: _Link) -> str:
    return next(name for name, m in items[link.first:link.last] if m is link.pool)


def _packed_layer(module: nn.Module, link: _Link | None, into: _Link | None) -> PackedXnorConv2d:
    """``module`` as a packed layer: reading bits if ``into`` feeds it, writing bits if it
    starts ``link``."""
    bits, alpha = module.packed_weight()
    bias = None if module.bias is None else module.bias.detach().float()
    common = dict(bounds=None if link is None else link.intervals, float_input=into is None)
    if isinstance(module, XnorConv2d):
        return PackedXnorConv2d(bits, alpha, bias, module.in_channels, module.kernel_size,
                                module.stride, module.padding, module.dilation, **common)
    # A linear layer: a convolution whose kernel is the whole map it reads.
    channels, kh, kw = (into.flattened if into is not None and into.flattened is not None
                        else (module.in_features, 1, 1))
    if (kh, kw) != (1, 1):
        bits = _taps_major(bits, module.in_features, channels, kh, kw)
    return PackedXnorConv2d(bits, alpha, bias, channels, (kh, kw), whole_input=True,
                            flat_output=True, **common)


def _taps_major(bits: torch.Tensor, k: int, channels: int, kh: int, kw: int) -> torch.Tensor:
    """A linear layer's packed rows over ``(c, y, x)`` features repacked in the convolution
    order ``(y, x, channel words)``, a block of rows at a time (never the whole weight in
    float)."""
    out = None
    for rows in row_blocks((bits.shape[0], k)):
        signs = ops.unpack_bits(bits[rows], k).view(-1, channels, kh, kw)
        block = ops.pack_bits(signs.permute(0, 2, 3, 1)).reshape(signs.shape[0], -1)
        if out is None:
            out = bits.new_empty(bits.shape[0], block.shape[1])
        out[rows] = block
    return out


def _packed_pool(link: _Link, channels: int, device: torch.device) -> PackedMaxPool2d:
    """The max-pool of ``link`` on bits: AND for the channels whose modules after the pool
    decrease (the sign of their max is then the sign of their min), OR alone where none do."""
    pool = link.pool
    decreasing = torch.zeros(channels, dtype=torch.bool, device=device)
    for module in link.post_pool:
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.weight is not None:
            decreasing ^= module.weight.detach() < 0
    and_words = ops.pack_bits(torch.where(decreasing, 1.0, -1.0)) if decreasing.any() else None
    return PackedMaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                           pool.ceil_mode, and_words)


def _bounds(producer: nn.Module, link: _Link) -> torch.Tensor:
    """int32 ``[2, O]``: per output channel the interval of corrected dots whose value, through
    the producer's epilogue and the link's per-channel modules, has sign +1."""
    _, alpha = producer.packed_weight()
    bias = None if producer.bias is None else producer.bias.detach().float()
    modules = [*link.pre_pool, *link.post_pool]
    check_modules(modules, {"alpha": alpha, "bias": bias})
    if isinstance(producer, XnorConv2d):
        reach = producer.in_channels * producer.kernel_size[0] * producer.kernel_size[1]
    else:
        reach = producer.in_features
    return dot_interval(alpha, bias, modules, reach)
