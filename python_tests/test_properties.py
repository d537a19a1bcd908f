"""Property tests (hypothesis) of every op on every CPU path this machine runs (natively, or
emulated where conftest can build the emulated AVX-512 kernels).

1. The fake kernels (FakeTensor, hence torch.compile / torch.export) accept and reject exactly
   the inputs the real CPU kernels do, with the same output shape and dtype.
2. On random shapes, strides, dtypes and extreme values every op matches a slow, obvious
   reference.

Hypothesis does not mix with function-scoped fixtures, so each test loops over the CPU paths
itself (``per_isa``). Runs are derandomized, so CI sees the same examples every time.
"""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

from emokernels import ops

from .conftest import forced_isa, signs, supported_isas

INF, NAN = math.inf, math.nan
# Read once at import: supported_isas() answers differently while EMOKERNELS_CPU_ISA is set.
ISAS = supported_isas()

DTYPES = (torch.int32, torch.int64, torch.float32, torch.float64, torch.float16, torch.bfloat16,
          torch.uint8, torch.bool)
PACKABLE = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
BWN_X = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "transposed", "sliced", "broadcast")
K_EXTREMES = (-1, 0, 1, 2**31 - 1, 2**31, 2**40)
GEOMETRY_EXTREMES = (-1, 0, 1, 2, 3, 2**31, 2**62, 2**63 - 1)
# Row (gemm) or image (conv) contents; "huge_pair" is two values of magnitude 1.5e38: every
# partial sum stays below float32's max, but 2 * sum|x| overflows.
KINDS = ("normal", "inf", "inf_pair", "nan", "huge_pair", "denormal")

SEEDS = st.integers(0, 2**32 - 1)


def property_settings(max_examples: int):
    """Deterministic examples, no deadline, and no example database written to the repo."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------- shared helpers


def per_isa(call) -> dict:
    """``{isa: call()}`` for every CPU path this machine runs (natively or emulated). ``call``
    must look its op up at call time: the emulated path swaps ``torch.ops.emokernels``."""
    out = {}
    for isa in ISAS:
        with forced_isa(isa):
            out[isa] = call()
    return out


def relayout(x: torch.Tensor, layout: str, fill=0) -> torch.Tensor:
    """``x`` with other strides: the same values, except that ``broadcast`` repeats ``x[:1]``
    along dim 0 (stride 0). The gaps of a ``sliced`` view hold ``fill``, so a kernel that reads
    the wrong elements picks up NaN or garbage bits."""
    if x.dim() == 0 or layout == "contiguous":
        return x
    if layout == "transposed":
        return x.transpose(-1, -2).contiguous().transpose(-1, -2) if x.dim() >= 2 else x
    if layout == "sliced":
        wide = torch.full((*x.shape[:-1], 2 * x.shape[-1]), fill, dtype=x.dtype)
        wide[..., 1::2] = x
        return wide[..., 1::2]
    return x[:1].expand_as(x)


def random_words(shape, gen: torch.Generator) -> torch.Tensor:
    """int32 words with all 32 bits random (the sign bit and the bits past k included)."""
    return torch.randint(0, 2**32, shape, generator=gen, dtype=torch.int64).to(torch.int32)


def with_garbage_past_k(bits: torch.Tensor, k: int) -> torch.Tensor:
    """Packed weights with every bit past k set in the last word: the ops must ignore them."""
    if k % 32:
        bits = bits.clone()
        bits[:, -1] |= -(1 << (k % 32))
    return bits


def extremes_for(dtype: torch.dtype) -> list:
    """Values at the edges of ``dtype``: signed zeros, denormals, +-1e-300 (-0.0 outside
    float64), the largest finite values, infinities and NaN."""
    fi = torch.finfo(dtype)
    return [0.0, -0.0, fi.smallest_normal / 4, -fi.smallest_normal / 4, 1e-300, -1e-300,
            fi.max, -fi.max, INF, -INF, NAN]


@st.composite
def sprinkled(draw, shape, dtype: torch.dtype) -> torch.Tensor:
    """Contiguous randn ``shape`` in ``dtype`` with up to 8 of ``dtype``'s extremes written at
    drawn positions (built in float64, so the cast rounds them the way the op's user would)."""
    gen = torch.Generator().manual_seed(draw(SEEDS))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    flat = x.view(-1)
    if flat.numel():
        for _ in range(draw(st.integers(0, 8))):
            flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(
                extremes_for(dtype)))
    return x.to(dtype)


def fill_kind(x: torch.Tensor, kind: str, gen: torch.Generator) -> None:
    """Writes one of KINDS into the float32 vector ``x`` in place, at random positions."""
    cols = torch.randperm(x.numel(), generator=gen)[:2].tolist()
    s1, s2 = (torch.randint(0, 2, (2,), generator=gen) * 2 - 1).tolist()
    values = {"inf": [s1 * INF], "inf_pair": [INF, -INF], "nan": [NAN],
              "huge_pair": [s1 * 1.5e38, s2 * 1.5e38]}.get(kind, [])
    if kind == "denormal":
        x.mul_(1e-40)  # below float32's (and bfloat16's) smallest normal, 1.2e-38
    # With one element both values land on it: the second one stays.
    for col, value in zip((cols[0], cols[-1]), values, strict=False):
        x[col] = value


# ------------------------------------------------- 1. parity of the fake and the real checks


def outcome(call) -> tuple:
    """``("error",)`` when ``call`` raises RuntimeError, else the output's (shape, dtype).
    Any other exception propagates and fails the test."""
    try:
        out = call()
    except RuntimeError:
        return ("error",)
    return (tuple(out.shape), out.dtype)


def call_op(name: str, args):
    """``torch.ops.emokernels.<name>(*args)``, looked up now (see :func:`per_isa`)."""
    return getattr(torch.ops.emokernels, name)(*args)


def fake_outcome(name: str, args) -> tuple:
    """:func:`outcome` of op ``name`` on FakeTensor copies of ``args`` (its fake kernel)."""
    mode = FakeTensorMode()
    fakes = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    with mode:
        return outcome(lambda: call_op(name, fakes))


def assert_fake_matches_real(name: str, args) -> None:
    """The fake kernel accepts and rejects ``args`` like the real one on every CPU path."""
    real = per_isa(lambda: outcome(lambda: call_op(name, args)))
    fake = fake_outcome(name, args)
    assert all(r == fake for r in real.values()), f"real {real}, fake {fake}"


def faults(names: list, target: str | None):
    """The faults to inject: none (a valid call) a third of the time, else one fault of the
    argument ``target``, or with ``target`` None two faults of any arguments."""
    if target is None:
        some = st.frozensets(st.sampled_from(names), min_size=2, max_size=2)
    else:
        some = st.sampled_from([f for f in names if f[0] == target]).map(lambda f: frozenset([f]))
    return st.sampled_from((False, True, True)).flatmap(
        lambda broken: some if broken else st.just(frozenset()))


def tensor_faults(name: str, rank: int) -> list:
    """The faults of tensor argument ``name``: another rank, another dtype, another size in one
    dimension."""
    return [(name, "rank"), (name, "dtype"), *((name, "size", i) for i in range(rank))]


def filled(shape, dtype: torch.dtype, layout: str) -> torch.Tensor:
    """A small tensor of ``shape`` and ``dtype`` in ``layout``; its values do not matter."""
    x = (torch.arange(math.prod(shape)) % 5 - 2).reshape(shape).to(dtype)
    return relayout(x, layout)


@st.composite
def tensor_arg(draw, name: str, shape, dtype: torch.dtype, bad) -> torch.Tensor:
    """A tensor of ``shape`` and ``dtype`` in a drawn layout, with the faults in ``bad`` that
    name it: another dtype, another size in one dimension (often 0), another rank (0-3)."""
    shape = list(shape)
    # The rank last, so that a size fault indexes the valid shape.
    for fault in sorted((f for f in bad if f[0] == name), key=lambda f: f[1] == "rank"):
        if fault[1] == "dtype":
            dtype = draw(st.sampled_from([d for d in DTYPES if d != dtype]))
        elif fault[1] == "size":
            size = shape[fault[2]]
            shape[fault[2]] = draw(st.sampled_from(sorted({0, 1, size + 1, size + 2,
                                                           max(size - 1, 0)} - {size})))
        elif fault[1] == "rank":
            rank = len(shape)
            shape = draw(st.lists(st.integers(0, 3), max_size=3).filter(
                lambda s, rank=rank: len(s) != rank))
    return filled(shape, dtype, draw(st.sampled_from(LAYOUTS)))


@st.composite
def optional_arg(draw, name: str, shape, dtype: torch.dtype, bad):
    """None, or :func:`tensor_arg`; never None when a fault in ``bad`` names it."""
    if any(f[0] == name for f in bad) or draw(st.booleans()):
        return draw(tensor_arg(name, shape, dtype, bad))
    return None


def k_arg(k: int, bad):
    """k, or with the fault ("k",) an out-of-range k or one whose word (or column) count
    differs."""
    if ("k",) not in bad:
        return st.just(k)
    return st.sampled_from((*K_EXTREMES, k - 1, k + 1, k + 31, k + 32))


SMALL = st.integers(0, 4)
VALID_K = st.one_of(st.sampled_from((1, 31, 32, 33, 64)), st.integers(1, 200))


@st.composite
def pack_bits_args(draw, target: str | None) -> list:
    shape = (*draw(st.lists(SMALL, max_size=2)), draw(st.integers(1, 70)))
    bad = draw(faults(tensor_faults("x", len(shape)), target))
    return [draw(tensor_arg("x", shape, draw(st.sampled_from(PACKABLE)), bad))]


@st.composite
def pack_channels_args(draw, target: str | None) -> list:
    b, c, h, w = draw(SMALL), draw(st.integers(1, 40)), draw(SMALL), draw(SMALL)
    names = [*tensor_faults("x", 4), *tensor_faults("lower", 1), *tensor_faults("upper", 1)]
    bad = draw(faults(names, target))
    return [draw(tensor_arg("x", (b, c, h, w), torch.float32, bad)),
            draw(tensor_arg("lower", (c,), torch.float32, bad)),
            draw(tensor_arg("upper", (c,), torch.float32, bad))]


@st.composite
def xnor_gemm_args(draw, target: str | None, fused: str = "") -> list:
    """xnor_gemm's arguments, or with ``fused`` "scaled" / "sign" those of xnor_gemm_scaled /
    xnor_gemm_sign."""
    m, n, k = draw(SMALL), draw(SMALL), draw(VALID_K)
    names = [*tensor_faults("a", 2), *tensor_faults("b", 2), ("k",)]
    if fused == "scaled":
        names += [*tensor_faults("scale", 1), *tensor_faults("bias", 1)]
    if fused == "sign":
        names += tensor_faults("bounds", 2)
    if fused:  # ("offset", "rows"): P not dividing M
        names += [*tensor_faults("offset", 2), ("offset", "rows")]
    bad = draw(faults(names, target))
    words = ops.words_for_bits(k)
    args = [draw(tensor_arg("a", (m, words), torch.int32, bad)),
            draw(tensor_arg("b", (n, words), torch.int32, bad)), draw(k_arg(k, bad))]
    if fused == "scaled":
        args += [draw(tensor_arg("scale", (n,), torch.float32, bad)),
                 draw(optional_arg("bias", (n,), torch.float32, bad))]
    if fused == "sign":
        args.append(draw(tensor_arg("bounds", (2, n), torch.int32, bad)))
    if fused:
        divides = ("offset", "rows") not in bad or m == 0  # every P divides 0
        rows = draw(st.sampled_from([p for p in range(1, m + 3) if (m % p == 0) == divides]))
        args.append(draw(optional_arg("offset", (rows, n), torch.int32, bad)))
    return args


def bwn_faults(x_rank: int) -> list:
    """The faults of the x, w_bits and alpha arguments of bwn_gemm / bwn_conv2d."""
    return [*tensor_faults("x", x_rank), *tensor_faults("w", 2), *tensor_faults("alpha", 1)]


def bwn_weight_args(draw, x_shape, n: int, k: int, bad) -> list:
    """x, w_bits and alpha of bwn_gemm / bwn_conv2d, in valid dtypes unless ``bad`` says."""
    return [draw(tensor_arg("x", x_shape, draw(st.sampled_from(BWN_X)), bad)),
            draw(tensor_arg("w", (n, ops.words_for_bits(k)), torch.int32, bad)),
            draw(tensor_arg("alpha", (n,), draw(st.sampled_from(PACKABLE)), bad))]


@st.composite
def bwn_gemm_args(draw, target: str | None) -> list:
    m, n, k = draw(SMALL), draw(SMALL), draw(VALID_K)
    bad = draw(faults([*bwn_faults(2), ("k",)], target))
    return [*bwn_weight_args(draw, (m, k), n, k, bad), draw(k_arg(k, bad))]


@st.composite
def bwn_conv2d_args(draw, target: str | None) -> list:
    c, n, batch = draw(st.integers(1, 5)), draw(SMALL), draw(st.integers(0, 2))
    kernel, stride, dilation = ([draw(st.integers(1, hi)) for _ in range(2)] for hi in (3, 3, 2))
    h, w = (d * (kk - 1) + 1 + draw(st.integers(0, 2))
            for d, kk in zip(dilation, kernel, strict=True))
    bad = draw(faults([*bwn_faults(4), ("x", "no_channels"), ("geometry", "value"),
                       ("geometry", "length")], target))
    x_shape = (batch, h, w, 0 if ("x", "no_channels") in bad else c)
    args = bwn_weight_args(draw, x_shape, n, kernel[0] * kernel[1] * c, bad)
    geometry = [kernel, stride, dilation]
    if ("geometry", "value") in bad:
        which, i = draw(st.integers(0, 2)), draw(st.integers(0, 1))
        geometry[which][i] = draw(st.sampled_from(GEOMETRY_EXTREMES))
    if ("geometry", "length") in bad:
        geometry[draw(st.integers(0, 2))] = draw(st.lists(
            st.sampled_from(GEOMETRY_EXTREMES), min_size=1, max_size=3).filter(
                lambda v: len(v) != 2))
    return [*args, *geometry]


@st.composite
def cp_conv2d_args(draw, target: str | None) -> list:
    b, c, r, n = (draw(st.integers(1, 3)) for _ in range(4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    names = [*tensor_faults("x", 4), *tensor_faults("u_in", 2), *tensor_faults("k_v", 2),
             *tensor_faults("k_h", 2), *tensor_faults("u_out", 2), *tensor_faults("bias", 1),
             ("geometry", "value"), ("geometry", "length")]
    bad = draw(faults(names, target))
    shapes = {"x": (b, c, h, w), "u_in": (r, c), "k_v": (r, kh), "k_h": (r, kw),
              "u_out": (n, r)}
    args = [draw(tensor_arg(name, shape, torch.float32, bad)) for name, shape in shapes.items()]
    args.append(draw(optional_arg("bias", (n,), torch.float32, bad)))
    # Valid: the kernel fits the padded image (small images get padding).
    geometry = [[draw(st.integers(1, 3)) for _ in range(2)],
                [max(0, (kh - h + 1) // 2), max(0, (kw - w + 1) // 2) + draw(st.integers(0, 1))]]
    if ("geometry", "value") in bad:
        geometry[draw(st.integers(0, 1))][draw(st.integers(0, 1))] = draw(
            st.sampled_from(GEOMETRY_EXTREMES))
    if ("geometry", "length") in bad:
        geometry[draw(st.integers(0, 1))] = draw(st.lists(
            st.sampled_from(GEOMETRY_EXTREMES), min_size=1, max_size=3).filter(
                lambda v: len(v) != 2))
    return [*args, *geometry]


# Per op: its argument strategy and the arguments it can break. Each test item breaks one
# argument (or, for None, any two), so that every check is exercised in every run.
PARITY = {"pack_bits": (pack_bits_args, ("x",)),
          "pack_channels": (pack_channels_args, ("x", "lower", "upper")),
          "xnor_gemm": (xnor_gemm_args, ("a", "b", "k")),
          "xnor_gemm_scaled": (functools.partial(xnor_gemm_args, fused="scaled"),
                               ("a", "b", "k", "scale", "bias", "offset")),
          "xnor_gemm_sign": (functools.partial(xnor_gemm_args, fused="sign"),
                             ("a", "b", "k", "bounds", "offset")),
          "bwn_gemm": (bwn_gemm_args, ("x", "w", "alpha", "k")),
          "bwn_conv2d": (bwn_conv2d_args, ("x", "w", "alpha", "geometry")),
          "cp_conv2d": (cp_conv2d_args, ("x", "u_in", "k_v", "k_h", "u_out", "bias",
                                         "geometry"))}


@pytest.mark.parametrize("name, target", [
    pytest.param(name, target, id=f"{name}-{target or 'two_faults'}")
    for name, (_, targets) in PARITY.items() for target in (*targets, None)])
def test_fake_checks_match_real_checks(name, target):
    strategy, targets = PARITY[name]

    # About 150 examples per op in all.
    @property_settings(max(30, 150 // (len(targets) + 1)))
    @given(strategy(target))
    def check(args):
        assert_fake_matches_real(name, args)

    check()


# ------------------------------------------------------------- 2. the ops against references


DIM = st.integers(1, 40)  # 1 included: hypothesis favours the bounds
# Tails (k % 32, k % 16 != 0), exact words, and the table path's 128-wide k blocks.
K = st.one_of(st.sampled_from((1, 15, 16, 31, 32, 33, 127, 128, 129, 256)), st.integers(1, 300))


def reference_pack(x: torch.Tensor) -> torch.Tensor:
    """Bit j of word w is ``x[..., 32w + j] >= 0`` in x's own dtype (NaN -> 0); bits past K
    are 0."""
    k, words = x.shape[-1], ops.words_for_bits(x.shape[-1])
    bits = torch.zeros(*x.shape[:-1], 32 * words, dtype=torch.int64)
    bits[..., :k] = (x >= 0).long()
    packed = (bits.view(*x.shape[:-1], words, 32) << torch.arange(32)).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


@property_settings(100)
@given(dtype=st.sampled_from(PACKABLE), data=st.data())
def test_pack_bits_matches_reference(dtype, data):
    shape = (*data.draw(st.lists(st.integers(1, 4), max_size=2)), data.draw(K))
    x = relayout(data.draw(sprinkled(shape, dtype)), data.draw(st.sampled_from(LAYOUTS)), NAN)
    want = reference_pack(x)
    for isa, got in per_isa(lambda: ops.pack_bits(x)).items():
        assert torch.equal(got, want), isa


def unpacked_signs(bits: torch.Tensor, k: int) -> torch.Tensor:
    """int64 +-1 of the first k bit positions of each row of packed words (bit 1 -> +1)."""
    unsigned = bits.long() & 0xFFFFFFFF
    return ((unsigned[..., None] >> torch.arange(32)) & 1).flatten(-2)[..., :k] * 2 - 1


def reference_xnor(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """int64 ``sum_{i<k} s(a[m, i]) * s(b[n, i])``."""
    return unpacked_signs(a, k) @ unpacked_signs(b, k).T


@st.composite
def xnor_operands(draw) -> tuple:
    """Random words (garbage past k included) for a [M, W] and b [N, W], in drawn layouts."""
    m, n, k = draw(DIM), draw(DIM), draw(K)
    gen = torch.Generator().manual_seed(draw(SEEDS))
    a, b = (relayout(random_words((rows, ops.words_for_bits(k)), gen),
                     draw(st.sampled_from(LAYOUTS)), -1) for rows in (m, n))
    return a, b, k


@property_settings(80)
@given(operands=xnor_operands())
def test_xnor_gemm_matches_reference(operands):
    a, b, k = operands
    want = reference_xnor(a, b, k)
    for isa, got in per_isa(lambda: ops.xnor_gemm(a, b, k)).items():
        assert got.dtype == torch.int32 and torch.equal(got.long(), want), isa


@st.composite
def epilogue(draw, m: int, n: int, k: int) -> tuple:
    """scale, optional bias (float32 with extremes) and optional offset [P, N], P | M, whose
    sums with any dot (|dot| <= k) stay in int32."""
    vector = lambda: relayout(draw(sprinkled((n,), torch.float32)),  # noqa: E731
                              draw(st.sampled_from(LAYOUTS)), NAN)
    scale = vector()
    bias = vector() if draw(st.booleans()) else None
    if not draw(st.booleans()):
        return scale, bias, None
    rows = draw(st.sampled_from([p for p in range(1, m + 1) if m % p == 0]))
    limit = draw(st.sampled_from((50, 2**31 - 1 - k)))  # small, or int -> float rounding
    gen = torch.Generator().manual_seed(draw(SEEDS))
    offset = torch.randint(-limit, limit + 1, (rows, n), generator=gen).to(torch.int32)
    return scale, bias, relayout(offset, draw(st.sampled_from(LAYOUTS)), -1)


@property_settings(80)
@given(data=st.data())
def test_xnor_gemm_scaled_matches_reference(data):
    a, b, k = data.draw(xnor_operands())
    scale, bias, offset = data.draw(epilogue(a.shape[0], b.shape[0], k))
    dots = reference_xnor(a, b, k)
    if offset is not None:
        dots = dots + offset.long().repeat(a.shape[0] // offset.shape[0], 1)
    # float32 multiply, then a separate float32 add: the contract rules out an FMA.
    want = dots.float() * scale
    want = want if bias is None else want + bias
    for isa, got in per_isa(lambda: ops.xnor_gemm_scaled(a, b, k, scale, bias, offset)).items():
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=isa)


@st.composite
def sign_bounds(draw, n: int) -> torch.Tensor:
    """int32 [2, N]: per channel an interval from the four kinds the fused layers make (from
    a threshold up, up to a threshold, everything, nothing) or any two ends, extremes included."""
    gen = torch.Generator().manual_seed(draw(SEEDS))
    ends = torch.randint(-300, 300, (2, n), generator=gen)
    kind = torch.randint(0, 5, (n,), generator=gen)
    lo, hi = -(2**31), 2**31 - 1
    lower = torch.where((kind == 1) | (kind == 2), lo, ends[0])
    upper = torch.where((kind == 0) | (kind == 2), hi, ends[1])
    lower = torch.where(kind == 3, 1, lower)
    upper = torch.where(kind == 3, 0, upper)
    bounds = torch.stack([lower, upper]).to(torch.int32)
    return relayout(bounds, draw(st.sampled_from(LAYOUTS)), -1)


def pack_reference(bits: torch.Tensor) -> torch.Tensor:
    """int32 ``[M, ceil(N/32)]`` of a bool ``[M, N]``: bit j of word w is column 32 w + j."""
    m, n = bits.shape
    words = ops.words_for_bits(n) if n else 0
    padded = torch.nn.functional.pad(bits.long(), (0, 32 * words - n)).view(m, words, 32)
    packed = (padded << torch.arange(32)).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


@property_settings(80)
@given(data=st.data())
def test_xnor_gemm_sign_matches_reference(data):
    a, b, k = data.draw(xnor_operands())
    _, _, offset = data.draw(epilogue(a.shape[0], b.shape[0], k))
    bounds = data.draw(sign_bounds(b.shape[0]))
    dots = reference_xnor(a, b, k)
    if offset is not None:
        dots = dots + offset.long().repeat(a.shape[0] // offset.shape[0], 1)
    lower, upper = bounds.long()
    want = pack_reference((lower <= dots) & (dots <= upper))
    for isa, got in per_isa(lambda: ops.xnor_gemm_sign(a, b, k, bounds, offset)).items():
        assert torch.equal(got, want), isa


def nonfinite(out: torch.Tensor) -> tuple:
    """Where ``out`` is NaN, and its value where it is +-inf (0 elsewhere)."""
    out = out.double()
    return out.isnan(), torch.where(out.isinf(), out, 0.0)


def assert_bwn_matches(outs: dict, ref: torch.Tensor, bound: torch.Tensor,
                       dtype: torch.dtype) -> None:
    """Every path's output is NaN where the float64 reference is, the same inf where it is
    inf, within ``bound`` elsewhere (plus the output's rounding: 2^-8 relative for bfloat16,
    2^-11 for float16), and has the portable path's NaN/inf pattern."""
    rounding = {torch.bfloat16: 2**-8, torch.float16: 2**-11}.get(dtype)
    if rounding:
        bound = bound + ref.abs() * rounding
    want, portable = nonfinite(ref), nonfinite(outs["portable"])
    for isa, out in outs.items():
        assert out.dtype == dtype and out.shape == ref.shape, isa
        got = nonfinite(out)
        for what, g, w, p in zip(("NaN", "inf"), got, want, portable, strict=True):
            assert torch.equal(g, w), f"{isa}: {what} differs at {(g != w).nonzero()[:5].tolist()}"
            assert torch.equal(g, p), f"{isa}: {what} pattern differs from the portable path"
        err = (out.double() - ref).abs()
        bad = ref.isfinite() & ~(err <= bound)
        assert not bad.any(), (f"{isa}: error {err[bad][:5].tolist()} > bound "
                               f"{bound[bad][:5].tolist()} at {bad.nonzero()[:5].tolist()}")


def rounded_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """alpha as the kernels use it: rounded to float32, then widened for the reference."""
    return alpha.float().double()


@st.composite
def bwn_x(draw, shape) -> torch.Tensor:
    """randn ``shape`` whose slices along dim 0 (gemm rows, conv images) each hold one drawn
    kind of extreme (see KINDS), in a drawn dtype and layout."""
    gen = torch.Generator().manual_seed(draw(SEEDS))
    x = torch.randn(shape, generator=gen)
    rows = shape[0]
    for row, kind in zip(x.view(rows, -1), draw(st.lists(st.sampled_from(KINDS),
                                                         min_size=rows, max_size=rows)),
                         strict=True):
        fill_kind(row, kind, gen)
    return relayout(x.to(draw(st.sampled_from(BWN_X))), draw(st.sampled_from(LAYOUTS)), NAN)


@st.composite
def bwn_weights(draw, shape) -> tuple:
    """Float weights ``shape`` (their signs matter); their packed bits, with garbage past k, in
    a drawn layout; alpha in [0.1, 1] in a drawn floating dtype and layout."""
    gen = torch.Generator().manual_seed(draw(SEEDS))
    weight = torch.randn(shape, generator=gen)
    # Convolution weights [O, C, kh, kw] are packed in (ky, kx, c) order.
    rows = weight if weight.dim() == 2 else weight.permute(0, 2, 3, 1).reshape(shape[0], -1)
    bits = with_garbage_past_k(ops.pack_bits(rows), rows.shape[1])
    # Not broadcast: repeating row 0 of the bits would break the match with ``weight``.
    bits = relayout(bits, draw(st.sampled_from(LAYOUTS[:3])), -1)
    alpha = (torch.rand(shape[0], generator=gen) * 0.9 + 0.1).to(draw(st.sampled_from(PACKABLE)))
    return weight, bits, relayout(alpha, draw(st.sampled_from(LAYOUTS)), NAN)


@property_settings(100)
@given(data=st.data())
def test_bwn_gemm_matches_reference(data):
    # Small M / N = 1 for the row tiles (the tables of each row once N >= 8 on AVX2, N >= 16
    # on AVX-512); M >= 16 with N >= 32 for the table paths.
    m = data.draw(st.one_of(st.integers(1, 5), st.integers(16, 40)))
    n = data.draw(st.one_of(st.just(1), st.integers(1, 8), st.integers(32, 48)))
    k = data.draw(K)
    x = data.draw(bwn_x((m, k)))
    weight, bits, alpha = data.draw(bwn_weights((n, k)))
    a = rounded_alpha(alpha)
    ref = x.double() @ (a[:, None] * signs(weight)).T
    bound = 1e-6 * x.double().abs().sum(1, keepdim=True) * a + 1e-6  # |x| @ alpha
    assert_bwn_matches(per_isa(lambda: ops.bwn_gemm(x, bits, alpha, k)), ref, bound, x.dtype)


def conv_nhwc(image: torch.Tensor, weight: torch.Tensor, stride, dilation) -> torch.Tensor:
    """float64 F.conv2d of an NHWC image with an [O, C, kh, kw] weight, as NHWC."""
    return F.conv2d(image.double().permute(0, 3, 1, 2), weight.double(), None, stride, 0,
                    dilation).permute(0, 2, 3, 1)


@property_settings(80)
@given(data=st.data())
def test_bwn_conv2d_matches_reference(data):
    # C % 16 == 0 takes the implicit-im2col table path on AVX-512 (when B * Ho * Wo >= 16).
    c = data.draw(st.sampled_from((5, 16, 32)))
    kernel, stride, dilation = ([data.draw(st.integers(1, hi)) for _ in range(2)]
                                for hi in (3, 3, 2))
    # Just large enough, or enough outputs (B * Ho * Wo >= 16) for the table path.
    extra = st.one_of(st.integers(0, 1), st.integers(2, 8))
    h, w = (d * (kk - 1) + 1 + data.draw(extra) for d, kk in zip(dilation, kernel, strict=True))
    batch, o = data.draw(st.integers(1, 3)), data.draw(st.one_of(st.just(1), DIM))
    # One kind of extreme per image: at most two huge values in any receptive field.
    image = data.draw(bwn_x((batch, h, w, c)))
    weight, bits, alpha = data.draw(bwn_weights((o, c, *kernel)))
    a = rounded_alpha(alpha)
    ref = conv_nhwc(image, a[:, None, None, None] * signs(weight), stride, dilation)
    bound = 1e-6 * conv_nhwc(image.abs(), torch.ones(1, c, *kernel), stride, dilation) * a + 1e-6
    outs = per_isa(lambda: ops.bwn_conv2d(image, bits, alpha, kernel, stride, dilation))
    assert_bwn_matches(outs, ref, bound, image.dtype)


# ---------------------------------------------------------------------------- 3. regressions


@pytest.mark.parametrize("m, n", [(1, 1), (3, 40), (16, 40)],
                         ids=["row_tile", "row_tables", "table"])
def test_inf_in_a_row_stays_inf_on_every_path(m, n):
    """One +inf among ones: the AVX-512 table path once computed 2 * sum - sum|x| = NaN."""
    x = torch.ones(m, 40)
    x[0, 0] = INF
    bits = ops.pack_bits(torch.ones(n, 40))
    for isa, out in per_isa(lambda: ops.bwn_gemm(x, bits, torch.ones(n), 40)).items():
        assert torch.equal(out[0], torch.full((n,), INF)), isa
        assert torch.equal(out[1:], torch.full((m - 1, n), 40.0)), isa
