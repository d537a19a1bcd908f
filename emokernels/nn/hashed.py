"""HashedNets drop-in replacements for ``nn.Linear`` and ``nn.Conv2d``.

A hashed layer owns only a float32 vector of ``num_buckets`` shared weights. Its virtual weight
``W[i, j] = sign(i, j) * buckets[bucket(i, j)]`` (row ``i`` = output unit, column ``j`` = input
index; the hash is :mod:`emokernels.ops.hashed_linear`'s) is generated inside the
``hashed_linear`` kernels and never stored: train and eval run the same op, so there is nothing
to pack or freeze. With ``hash_bias=True`` the bias is hashed too, from its own bucket vector,
as the ``[out, 1]`` virtual matrix of seed ``seed + 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .. import ops
from .bit_patches import conv_output_size

_MAX_BUCKETS = 2**30  # the op's limit
_MAX_BLOCK = 256
# Rows of the float weight hashed at once by from_float: bounds the int64 temporaries of the
# Python hash to a few tens of MB whatever the layer's size.
_HASH_CHUNK = 1 << 22


def num_buckets_for(compression: float, count: int) -> int:
    """``max(1, round(compression * count))`` (round half to even): the buckets that stand for
    ``count`` virtual weights."""
    return max(1, round(compression * count))


def _check_options(owner: str, compression: float, seed: int, block: int) -> float:
    """Validates the hashing options (``ValueError`` / ``TypeError``); returns compression as
    a float, so it is saved and compared as one."""
    if isinstance(compression, bool) or not isinstance(compression, (int, float)):
        raise TypeError(f"{owner}: compression must be a float in (0, 1], got {compression!r}")
    if not 0.0 < compression <= 1.0 or not math.isfinite(compression):
        raise ValueError(f"{owner}: compression must be in (0, 1], got {compression}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"{owner}: seed must be an int in [0, 2^32 - 1], got {seed!r}")
    if (isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= _MAX_BLOCK
            or block & (block - 1)):
        raise ValueError(f"{owner}: block must be a power of two in [1, {_MAX_BLOCK}], got "
                         f"{block!r}")
    return float(compression)


def _check_positive(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


@torch.no_grad()
def bucket_means(weight: torch.Tensor, num_buckets: int, seed: int, block: int = 1
                 ) -> torch.Tensor:
    """float32 ``[num_buckets]``: each bucket's mean of ``sign(i, j) * weight[i, j]`` over its
    members (0 for a bucket with none), the least-squares hashed fit of ``weight [N, K]``.

    Sums run in float64, so a weight that is already a hashed one is reproduced exactly.
    """
    out_features, in_features = weight.shape
    sums = torch.zeros(num_buckets, dtype=torch.float64, device=weight.device)
    counts = torch.zeros(num_buckets, dtype=torch.int64, device=weight.device)
    step = max(1, _HASH_CHUNK // in_features)
    for start in range(0, out_features, step):
        rows = torch.arange(start, min(start + step, out_features), device=weight.device)
        index, sign = ops.hashed_codes(rows, in_features, num_buckets, seed, block)
        values = weight[start : start + step].to(torch.float64) * sign.to(torch.float64)
        sums.index_add_(0, index.flatten(), values.flatten())
        counts += torch.bincount(index.flatten(), minlength=num_buckets)
    return (sums / counts.clamp(min=1)).to(torch.float32)


class _HashedLayer(nn.Module):
    """Buckets, bias (or bias buckets) and the checks shared by the hashed layers."""

    buckets: nn.Parameter
    bias: nn.Parameter | None
    bias_buckets: nn.Parameter | None

    def _init_hashed(self, out_features: int, fan_in: int, bias: bool, compression: float,
                     hash_bias: bool, seed: int, block: int, device, dtype) -> None:
        owner = type(self).__name__
        self.compression = _check_options(owner, compression, seed, block)
        if dtype is not None and dtype != torch.float32:
            raise TypeError(f"{owner}: buckets are float32 (the hashed_linear op computes in "
                            f"float32 only), got dtype={dtype}")
        if max(out_features, fan_in) > 2**31 - 1:
            raise ValueError(f"{owner}: the virtual weight's rows and columns must be below "
                             f"2^31, got [{out_features}, {fan_in}]")
        self.hash_bias, self.seed, self.block = bool(hash_bias), seed, block
        self.num_buckets = num_buckets_for(self.compression, out_features * fan_in)
        if self.num_buckets > _MAX_BUCKETS:
            raise ValueError(f"{owner}: {self.num_buckets} buckets exceed the kernels' limit of "
                             f"2^30; use a smaller compression")
        factory = dict(device=device, dtype=torch.float32)
        self.buckets = nn.Parameter(torch.empty(self.num_buckets, **factory))
        self.num_bias_buckets = num_buckets_for(self.compression, out_features) if (
            bias and hash_bias) else 0
        if bias and hash_bias:
            self.register_parameter("bias", None)
            self.bias_buckets = nn.Parameter(torch.empty(self.num_bias_buckets, **factory))
        else:
            self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
            self.register_parameter("bias_buckets", None)
        self._fan_in = fan_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``+-1/sqrt(fan_in)``, nn.Linear's default bound on the virtual fan-in:
        with random signs, every virtual weight has nn.Linear's initial distribution."""
        bound = 1.0 / math.sqrt(self._fan_in)
        for p in (self.buckets, self.bias, self.bias_buckets):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    @property
    def _rows(self) -> int:
        raise NotImplementedError

    def dense_bias(self) -> torch.Tensor | None:
        """float32 ``[out]``: the bias (generated from ``bias_buckets`` when ``hash_bias``; then
        differentiable in them and never stored), or None without a bias."""
        if self.bias_buckets is None:
            return self.bias
        ones = torch.ones(1, 1, dtype=torch.float32, device=self.bias_buckets.device)
        # A one-column matrix reads one bucket per row whatever the block size: block=1.
        return ops.hashed_linear(ones, self.bias_buckets, self._rows,
                                 (self.seed + 1) % 2**32, 1).reshape(self._rows)

    def _matrix(self) -> torch.Tensor:
        """The virtual weight as a dense float32 ``[out, fan_in]`` (materialized)."""
        return ops.dense_hashed_weight(self.buckets, self._rows, self._fan_in, self.seed,
                                       self.block)

    def _check_tensor(self, x: torch.Tensor) -> None:
        owner = type(self).__name__
        if x.dtype != torch.float32:
            raise TypeError(f"{owner}: input must be float32 (the hashed_linear op computes in "
                            f"float32 only), got {x.dtype}")
        for p in (self.buckets, self.bias, self.bias_buckets):
            if p is not None and p.dtype != torch.float32:
                raise TypeError(f"{owner}: parameters must stay float32 (the hashed_linear op "
                                f"computes in float32 only), got {p.dtype}; do not convert "
                                "this layer with .double() / .half() / .to(dtype)")
        if x.device != self.buckets.device:
            raise ValueError(f"{owner}: input is on {x.device} but the layer's buckets are on "
                             f"{self.buckets.device}")

    def _hashed_product(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [M, fan_in] @ W.T + bias`` -> ``[M, out]`` through the hashed_linear op."""
        return ops.hashed_linear(rows, self.buckets, self._rows, self.seed, self.block,
                                 self.dense_bias())

    def _options_repr(self) -> str:
        bias = "hashed" if self.bias_buckets is not None else self.bias is not None
        return (f"bias={bias}, compression={self.compression}, num_buckets={self.num_buckets}, "
                f"seed={self.seed}, block={self.block}")


class HashedLinear(_HashedLayer):
    """``nn.Linear`` with a hashed virtual weight ``[out_features, in_features]``.

    Parameters: ``buckets`` float32 ``[num_buckets]`` with
    ``num_buckets = max(1, round(compression * out_features * in_features))``, and ``bias``
    float32 ``[out_features]`` or, with ``hash_bias=True``, ``bias_buckets`` float32
    ``[max(1, round(compression * out_features))]``. Input float32 ``[..., in_features]``,
    output float32 ``[..., out_features]``.
    """

    def __init__(self, in_features: int, out_features: int, compression: float = 1 / 8,
                 bias: bool = True, hash_bias: bool = False, seed: int = 0, block: int = 1,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        _check_positive(type(self).__name__, in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self._init_hashed(out_features, in_features, bias, compression, hash_bias, seed, block,
                          device, dtype)

    @property
    def _rows(self) -> int:
        return self.out_features

    @classmethod
    def shaped_like(cls, module: nn.Linear, compression: float = 1 / 8, seed: int = 0,
                    block: int = 1, hash_bias: bool = False,
                    device: torch.device | str | None = None) -> HashedLinear:
        """A freshly initialized layer with ``module``'s shape and bias presence, on ``device``
        (default: ``module``'s)."""
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{cls.__name__} replaces nn.Linear, got {type(module).__name__}")
        return cls(module.in_features, module.out_features, compression,
                   module.bias is not None, hash_bias, seed, block,
                   device=module.weight.device if device is None else device)

    @classmethod
    def from_float(cls, module: nn.Linear, compression: float = 1 / 8, seed: int = 0,
                   block: int = 1, hash_bias: bool = False) -> HashedLinear:
        """The hashed fit of ``module``: each bucket is the mean of ``sign * W`` over its
        members (empty buckets 0); the bias is copied, or fitted the same way when
        ``hash_bias``. Costs a hash of every weight (seconds for ~10^8 weights); on the meta
        device, nothing: there is nothing to fit, the layer has the shapes only."""
        layer = cls.shaped_like(module, compression, seed, block, hash_bias)
        _fit(layer, module.weight, module.bias)
        return layer

    def dense_weight(self) -> torch.Tensor:
        """float32 ``[out_features, in_features]``: the virtual weight, materialized
        (differentiable in ``buckets``; memory of the whole dense matrix)."""
        return self._matrix()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input [..., {self.in_features}], "
                             f"got {tuple(x.shape)}")
        self._check_tensor(x)
        out = self._hashed_product(x.reshape(-1, self.in_features))
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                + self._options_repr())


class HashedConv2d(_HashedLayer):
    """``nn.Conv2d`` (``groups=1``, zero padding) with a hashed virtual weight
    ``[out_channels, in_channels, kh, kw]``.

    Row ``i`` of the virtual matrix is output channel ``i`` and column
    ``j = (c * kh + y) * kw + x`` (``nn.Conv2d``'s ``weight.reshape(out, -1)`` order, also the
    order of ``F.unfold``'s patch rows). ``num_buckets = max(1, round(compression * out * C *
    kh * kw))``; bias as :class:`HashedLinear`. Input float32 ``[B, C, H, W]``, output float32
    ``[B, out_channels, Ho, Wo]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 compression: float = 1 / 8, hash_bias: bool = False, seed: int = 0,
                 block: int = 1, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_positive(owner, in_channels=in_channels, out_channels=out_channels)
        if groups != 1:
            raise ValueError(f"{owner} supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{owner} supports padding_mode='zeros' only, got "
                             f"{padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = (
            _pair(kernel_size), _pair(stride), _pair(dilation))
        for name in ("kernel_size", "stride", "dilation"):
            values = getattr(self, name)
            if not all(isinstance(v, int) and v >= 1 for v in values):
                raise ValueError(f"{owner}: {name} must be positive ints, got {values}")
        self.padding = _explicit_padding(owner, padding, self.kernel_size, self.stride,
                                         self.dilation)
        self.groups, self.padding_mode = 1, "zeros"
        kh, kw = self.kernel_size
        self._init_hashed(out_channels, in_channels * kh * kw, bias, compression, hash_bias,
                          seed, block, device, dtype)

    @property
    def _rows(self) -> int:
        return self.out_channels

    @classmethod
    def shaped_like(cls, module: nn.Conv2d, compression: float = 1 / 8, seed: int = 0,
                    block: int = 1, hash_bias: bool = False,
                    device: torch.device | str | None = None) -> HashedConv2d:
        """A freshly initialized layer with ``module``'s geometry and bias presence, on
        ``device`` (default: ``module``'s)."""
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"{cls.__name__} replaces nn.Conv2d, got {type(module).__name__}")
        return cls(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                   module.padding, module.dilation, module.groups, module.bias is not None,
                   module.padding_mode, compression, hash_bias, seed, block,
                   device=module.weight.device if device is None else device)

    @classmethod
    def from_float(cls, module: nn.Conv2d, compression: float = 1 / 8, seed: int = 0,
                   block: int = 1, hash_bias: bool = False) -> HashedConv2d:
        """The hashed fit of ``module`` (see :meth:`HashedLinear.from_float`)."""
        layer = cls.shaped_like(module, compression, seed, block, hash_bias)
        _fit(layer, module.weight, module.bias)
        return layer

    from_conv = from_float

    def dense_weight(self) -> torch.Tensor:
        """float32 ``[out_channels, in_channels, kh, kw]``: the virtual weight, materialized
        (differentiable in ``buckets``)."""
        return self._matrix().reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ho, wo = conv_output_size(self, x)
        self._check_tensor(x)
        batch = x.shape[0]
        # [B, C*kh*kw, L], rows in (c, y, x) order: exactly the virtual matrix's columns.
        patches = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding,
                           stride=self.stride)
        out = self._hashed_product(patches.transpose(1, 2).reshape(-1, self._fan_in))
        return out.view(batch, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                + self._options_repr())


def _explicit_padding(owner: str, padding, kernel_size, stride, dilation) -> tuple[int, int]:
    """``(ph, pw)`` of an int / pair / ``"valid"`` / ``"same"`` padding; F.unfold pads both
    sides alike, so ``"same"`` needs an odd effective kernel."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding != "same":
            raise ValueError(f"{owner}: padding must be ints, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{owner}: padding='same' needs stride 1, got {stride}")
        total = [d * (k - 1) for k, d in zip(kernel_size, dilation, strict=True)]
        if any(t % 2 for t in total):
            raise ValueError(f"{owner}: padding='same' needs an odd effective kernel size "
                             f"(symmetric padding), got kernel {kernel_size} at dilation "
                             f"{dilation}")
        return (total[0] // 2, total[1] // 2)
    pair = _pair(padding)
    if not all(isinstance(p, int) and p >= 0 for p in pair):
        raise ValueError(f"{owner}: padding must be non-negative ints, got {padding!r}")
    return pair


@torch.no_grad()
def _fit(layer: _HashedLayer, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Sets ``layer``'s buckets (and bias) to the hashed fit of a float weight and bias
    (nothing on the meta device)."""
    if weight.is_meta:
        return
    matrix = weight.detach().reshape(weight.shape[0], -1)
    layer.buckets.copy_(bucket_means(matrix, layer.num_buckets, layer.seed, layer.block))
    if layer.bias_buckets is not None:
        layer.bias_buckets.copy_(bucket_means(bias.detach()[:, None], layer.num_bias_buckets,
                                              (layer.seed + 1) % 2**32, 1))
    elif layer.bias is not None:
        layer.bias.copy_(bias.detach())
