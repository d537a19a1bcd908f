"""CP-decomposed convolutions (Lebedev et al.): a drop-in ``nn.Conv2d`` whose kernel is a sum of
``rank`` rank-one terms.

The layer stores four factors and never the dense kernel ``[N, C, kh, kw]``::

    W[n, c, y, x] = sum_r u_out[n, r] * u_in[r, c] * k_v[r, y] * k_h[r, x]

and runs them as one op (:func:`emokernels.ops.cp_conv2d`): a 1x1 projection to ``rank``
channels, a ``kh x 1`` and a ``1 x kw`` depthwise filter, a 1x1 projection to ``N`` channels.
``from_conv`` fits the factors to a float layer's kernel by CP-ALS (tensorly's ``parafac``).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .. import ops
from ..ops._checks import CP_DTYPES
from .bit_patches import conv_output_size
from .hashed import _explicit_padding

IntOrPair = int | tuple[int, int]

# ALS defaults: 256x64x3x3 at rank 192 takes 7-13 s on two cores. Twice the sweeps would lower
# the relative error only from 0.077 to 0.076 (a kernel with a decaying spectrum, as trained
# ones have) or from 0.63 to 0.61 (a random one): the fine-tuning after the fit does the rest.
DEFAULT_N_ITER_MAX = 50
DEFAULT_TOL = 1e-6
_INITS = ("svd", "random")
# ALS breaks down where the rank exceeds what the kernel needs: its normal equations turn
# singular as the spare terms degenerate.
_DIVERGED = ("the rank is likely above the kernel's own; use a lower rank, fewer iterations "
             "(n_iter_max), a larger tol or another seed")


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be positive, got {value}")
    return value


def _int_pair(owner: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a pair (``nn.Conv2d``'s convention)."""
    if isinstance(value, str):
        raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r} (give "
                        "'same' / 'valid' padding as explicit ints)")
    pair = _pair(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return tuple(pair)


def _conv_geometry(owner: str, conv: nn.Module) -> dict:
    """``conv``'s constructor arguments for :class:`CPConv2d` (explicit padding); a clear error
    for a layer the CP layer cannot stand for."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{owner} replaces nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"{owner} supports groups=1 only, got groups={conv.groups}")
    if tuple(conv.dilation) != (1, 1):
        raise ValueError(f"{owner} supports dilation 1 only, got dilation={conv.dilation}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{owner} supports padding_mode='zeros' only, got "
                         f"{conv.padding_mode!r}")
    padding = _explicit_padding(owner, conv.padding, conv.kernel_size, conv.stride, (1, 1))
    return dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                kernel_size=tuple(conv.kernel_size), stride=tuple(conv.stride), padding=padding,
                bias=conv.bias is not None)


def max_cp_rank(shape: tuple[int, ...]) -> int:
    """An upper bound of the CP rank of any tensor of ``shape``: the product of all its sizes
    but the largest (every tensor is a sum of that many rank-one terms)."""
    return math.prod(shape) // max(shape)


class CPFactors(NamedTuple):
    """A fitted CP kernel: ``u_in [R, C]``, ``k_v [R, kh]``, ``k_h [R, kw]``, ``u_out [N, R]``
    and the relative error ``||W - W_cp|| / ||W||`` of their dense kernel."""

    u_in: torch.Tensor
    k_v: torch.Tensor
    k_h: torch.Tensor
    u_out: torch.Tensor
    error: float


@torch.no_grad()
def cp_decompose_kernel(weight: torch.Tensor, rank: int, *,
                        n_iter_max: int = DEFAULT_N_ITER_MAX, init: str = "svd",
                        tol: float = DEFAULT_TOL, seed: int = 0) -> CPFactors:
    """The rank-``rank`` CP-ALS fit of a conv kernel (tensorly's ``parafac``, PyTorch backend).

    Args:
        weight: ``[N, C, kh, kw]``, floating point, any device (the ALS runs there, in float64
            for a float64 kernel and in float32 otherwise).
        rank: the number of rank-one terms ``R >= 1``.
        n_iter_max, tol: ALS sweeps at most, and the change of the relative error that stops
            them earlier.
        init: ``"svd"`` (leading singular vectors of each unfolding, random where the rank
            exceeds a mode's size) or ``"random"``.
        seed: of the random parts of the initialization; the fit is deterministic given it.

    Returns:
        :class:`CPFactors` in ``weight``'s dtype, each rank-one term's scale shared equally by
        its four factors (no factor tiny or huge), and the relative reconstruction error
        measured in float64.
    """
    # Imported here: tensorly (and the scipy it loads) takes most of a second to import.
    import tensorly
    from tensorly.decomposition import parafac

    owner = "cp_decompose_kernel"
    _positive_int(owner, "rank", rank)
    _positive_int(owner, "n_iter_max", n_iter_max)
    if init not in _INITS:
        raise ValueError(f"{owner}: init must be one of {_INITS}, got {init!r}")
    if weight.dim() != 4 or not weight.is_floating_point() or weight.numel() == 0:
        raise ValueError(f"{owner}: expected a non-empty floating-point [N, C, kh, kw] kernel, "
                         f"got {weight.dtype} {tuple(weight.shape)}")
    if not weight.any():
        raise ValueError(f"{owner}: the kernel is all zeros, there is nothing to fit (use "
                         "CPConv2d.shaped_like for a freshly initialized layer)")
    work = weight.detach().to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    with tensorly.backend_context("pytorch"), warnings.catch_warnings():
        # A rank above a mode's size is expected (192 > kh = 3): the SVD init fills the rest.
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
        try:
            weights, factors = parafac(work, rank, n_iter_max=n_iter_max, init=init, tol=tol,
                                       random_state=seed)
        except torch.linalg.LinAlgError as err:
            raise RuntimeError(f"{owner}: CP-ALS failed at rank {rank} ({err}); {_DIVERGED}"
                               ) from err
    if not all(bool(f.isfinite().all()) for f in (weights, *factors)):
        raise RuntimeError(f"{owner}: CP-ALS diverged at rank {rank} (non-finite factors); "
                           f"{_DIVERGED}")
    # Columns to unit norm, then each term's magnitude (its sign kept on u_out) split evenly
    # over the four factors: ALS leaves arbitrary scales, which fine-tuning would inherit.
    norms = [f.norm(dim=0) for f in factors]
    scale = weights * math.prod(norms)
    share = scale.abs() ** 0.25
    balanced = [f / n.clamp_min(torch.finfo(f.dtype).tiny) * share
                for f, n in zip(factors, norms, strict=True)]
    balanced[0] = balanced[0] * torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)
    out_f, in_f, v_f, h_f = balanced
    fitted = [t.to(weight.dtype).contiguous() for t in (in_f.T, v_f.T, h_f.T, out_f)]
    reference = weight.detach().double()
    dense = ops.cp_dense_weight(*(t.double() for t in fitted))
    error = float((reference - dense).norm() / reference.norm())
    return CPFactors(*fitted, error)


class CPConv2d(nn.Module):
    """``nn.Conv2d`` (``groups=1``, ``dilation=1``, zero padding) with a rank-``rank`` CP kernel.

    Parameters: ``u_in [rank, in_channels]``, ``k_v [rank, kh]``, ``k_h [rank, kw]``,
    ``u_out [out_channels, rank]`` and ``bias [out_channels]`` (or None), all of one floating
    dtype. Input ``[B, in_channels, H, W]`` in that dtype (NCHW or channels-last), output
    ``[B, out_channels, Ho, Wo]`` as ``nn.Conv2d`` with the dense kernel :meth:`dense_weight`.

    The forward runs the fused ``cp_conv2d`` op where it exists (float32 on the CPU; float32,
    float16 and bfloat16 on CUDA) and the same composition as four ``F.conv2d`` stages
    elsewhere (other dtypes, other devices, an empty batch): every case gives the same result
    and gradients, only the speed differs. After :meth:`from_conv`, ``decomposition_error``
    is the fit's relative error ``||W - W_cp|| / ||W||`` (None otherwise; it is not saved).
    """

    # Fixed geometry, readable as on nn.Conv2d.
    dilation = (1, 1)
    groups = 1
    padding_mode = "zeros"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair, rank: int,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _positive_int(owner, "in_channels", in_channels)
        self.out_channels = _positive_int(owner, "out_channels", out_channels)
        self.rank = _positive_int(owner, "rank", rank)
        self.kernel_size = _int_pair(owner, "kernel_size", kernel_size, 1)
        self.stride = _int_pair(owner, "stride", stride, 1)
        self.padding = _int_pair(owner, "padding", padding, 0)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"{owner}: dtype must be floating point, got {dtype}")
        factory = dict(device=device, dtype=dtype)
        kh, kw = self.kernel_size
        self.u_in = nn.Parameter(torch.empty(rank, in_channels, **factory))
        self.k_v = nn.Parameter(torch.empty(rank, kh, **factory))
        self.k_h = nn.Parameter(torch.empty(rank, kw, **factory))
        self.u_out = nn.Parameter(torch.empty(out_channels, rank, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.decomposition_error: float | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform factors whose dense kernel has ``nn.Conv2d``'s initial variance
        ``1 / (3 fan_in)``, ``fan_in = C kh kw``, each stage keeping its input's scale
        (variances ``1/C``, ``1/kh``, ``1/kw``, then ``1/(3 rank)``); the bias as nn.Conv2d."""
        kh, kw = self.kernel_size
        for p, variance in ((self.u_in, 1 / self.in_channels), (self.k_v, 1 / kh),
                            (self.k_h, 1 / kw), (self.u_out, 1 / (3 * self.rank))):
            bound = math.sqrt(3 * variance)  # uniform(-b, b) has variance b^2 / 3
            nn.init.uniform_(p, -bound, bound)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * kh * kw)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def shaped_like(cls, conv: nn.Conv2d, rank: int,
                    device: torch.device | str | None = None) -> CPConv2d:
        """A freshly initialized layer with ``conv``'s geometry, bias presence and dtype, on
        ``device`` (default: ``conv``'s), no decomposition: the empty layer a saved one is
        loaded into. ``"same"`` / ``"valid"`` padding becomes explicit; groups, dilation and
        padding modes other than ``nn.Conv2d``'s defaults are a ``ValueError``."""
        geometry = _conv_geometry(cls.__name__, conv)
        device = conv.weight.device if device is None else device
        return cls(rank=rank, device=device, dtype=conv.weight.dtype, **geometry)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, *, n_iter_max: int = DEFAULT_N_ITER_MAX,
                  init: str = "svd", tol: float = DEFAULT_TOL, seed: int = 0) -> CPConv2d:
        """The rank-``rank`` CP fit of ``conv``'s kernel (see :func:`cp_decompose_kernel` for
        the ALS options), its geometry and a copy of its bias; ``decomposition_error`` holds
        the fit's relative error. Costs about 10 s for 256x64x3x3 at rank 192 on two cores
        (linear in the kernel's size and about linear in the rank). On the meta device
        nothing is fitted: the layer has the shapes only."""
        layer = cls.shaped_like(conv, rank)
        if conv.weight.is_meta:
            return layer
        fit = cp_decompose_kernel(conv.weight, rank, n_iter_max=n_iter_max, init=init, tol=tol,
                                  seed=seed)
        with torch.no_grad():
            for name in ("u_in", "k_v", "k_h", "u_out"):
                getattr(layer, name).copy_(getattr(fit, name))
            if layer.bias is not None:
                layer.bias.copy_(conv.bias.detach())
        layer.decomposition_error = fit.error
        return layer

    @classmethod
    def from_float(cls, conv: nn.Conv2d, rank: int) -> CPConv2d:
        """:meth:`from_conv` with the default ALS options (``convert``'s constructor)."""
        return cls.from_conv(conv, rank)

    def dense_weight(self) -> torch.Tensor:
        """``[out_channels, in_channels, kh, kw]`` in the factors' dtype: the kernel they stand
        for, materialized (differentiable in every factor)."""
        return ops.cp_dense_weight(self.u_in, self.k_v, self.k_h, self.u_out)

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` with the dense kernel and a copy of the bias, on the layer's device
        and in its dtype: the same convolution (up to rounding), as one dense kernel."""
        weight = self.dense_weight()
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.padding, bias=self.bias is not None, device=weight.device,
                         dtype=weight.dtype)
        conv.weight.copy_(weight)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_output_size(self, x)  # shape errors as ValueErrors, before any kernel runs
        params = (self.u_in, self.k_v, self.k_h, self.u_out, self.bias)
        if torch.is_autocast_enabled(x.device.type):  # as nn.Conv2d under autocast
            dtype = torch.get_autocast_dtype(x.device.type)
            x, params = x.to(dtype), tuple(None if p is None else p.to(dtype) for p in params)
        if x.dtype != params[0].dtype:
            raise TypeError(f"{type(self).__name__}: input is {x.dtype} but the factors are "
                            f"{params[0].dtype}")
        args = (x, *params, self.stride, self.padding)
        fused = x.shape[0] > 0 and (x.dtype == torch.float32 if x.device.type == "cpu"
                                    else x.device.type == "cuda" and x.dtype in CP_DTYPES)
        return ops.cp_conv2d(*args) if fused else ops.cp_conv2d_reference(*args)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")


def cp_rank_for_error(conv: nn.Conv2d, max_error: float, ranks: list[int] | None = None, *,
                      n_iter_max: int = DEFAULT_N_ITER_MAX, init: str = "svd",
                      tol: float = DEFAULT_TOL, seed: int = 0) -> int:
    """The smallest rank of ``ranks`` whose CP fit of ``conv``'s kernel has a relative error
    ``<= max_error``, by a galloping then a binary search.

    Args:
        conv: an ``nn.Conv2d`` that :meth:`CPConv2d.from_conv` accepts.
        max_error: the largest acceptable ``||W - W_cp|| / ||W||``, ``>= 0``.
        ranks: the candidates (default ``1 .. max_cp_rank(W.shape)``, where an exact fit
            exists); the search assumes the error falls as the rank grows, true of the best fit
            and nearly true of ALS fits with one seed.
        n_iter_max, init, tol, seed: the ALS options of every fit, as in ``from_conv``.

    Costs at most ``2 ceil(log2(k + 1))`` ALS runs for the answer ``ranks[k]``, none above
    about twice the answer (where ALS could diverge, see :func:`cp_decompose_kernel`); an ALS
    run costs about linear in the rank: for 256x64x3x3 and an answer near 192, some 16 runs,
    a few minutes on two cores. A ``ValueError`` if no candidate reaches ``max_error``.
    """
    owner = "cp_rank_for_error"
    _conv_geometry(owner, conv)  # a layer from_conv would refuse is refused before any fit
    if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not (
            math.isfinite(max_error) and max_error >= 0):
        raise ValueError(f"{owner}: max_error must be a finite number >= 0, got {max_error!r}")
    if ranks is None:
        ranks = list(range(1, max_cp_rank(tuple(conv.weight.shape)) + 1))
    ranks = sorted({_positive_int(owner, "every rank", r) for r in ranks})
    if not ranks:
        raise ValueError(f"{owner}: ranks is empty")

    def fits(index: int) -> bool:
        error = cp_decompose_kernel(conv.weight, ranks[index], n_iter_max=n_iter_max,
                                    init=init, tol=tol, seed=seed).error
        if index == len(ranks) - 1 and not error <= max_error:
            raise ValueError(f"{owner}: no rank reaches error {max_error}: the largest, "
                             f"{ranks[index]}, leaves {error:.4g}")
        return error <= max_error

    lo, hi = 0, 0  # every candidate below ranks[lo] misses max_error
    while not fits(hi):
        lo, hi = hi + 1, min(2 * hi + 1, len(ranks) - 1)
    while lo < hi:  # ranks[hi] reaches it
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return ranks[hi]
