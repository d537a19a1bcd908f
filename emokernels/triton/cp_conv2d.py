"""The fused Triton kernel of :func:`emokernels.ops.cp_conv2d` (GPUs; the Triton interpreter on
the CPU in the tests).

One launch computes the whole CP convolution. A program owns one image, ``TH`` output rows, a
tile of output columns and a block of output channels, and walks the rank in chunks. For a chunk,
each input row of its window is projected to the chunk's channels once (``tl.dot`` over C) and
added, weighted by ``k_v``, into every one of the ``TH`` output rows whose vertical taps use it;
the horizontal taps of each output column are then gathered from that register tile, and the
last 1x1 projection accumulates ``z3 @ u_out.T`` in fp32. No R-channel intermediate reaches
global memory: what is recomputed is the chunk's projection of the window's halo columns and, per
block of output channels, the three first stages.
"""

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch._prims_common import suggest_memory_format
from torch.library import triton_op, wrap_triton

from ..ops._checks import CP_DTYPES, INT32_MAX, cp_conv2d_output_shape
from ..ops.cp_conv2d import cp_backward, setup_cp_context

# The interpreter runs every program in Python: one small config keeps the CPU tests fast (and
# a single config is never benchmarked).
_INTERPRET = triton.knobs.runtime.interpret
_CONFIGS = ([triton.Config({"TH": 2, "WIN": 16, "BLOCK_N": 32})] if _INTERPRET else [
    triton.Config({"TH": th, "WIN": win, "BLOCK_N": bn}, num_warps=warps, num_stages=2)
    for th, win, bn, warps in ((2, 16, 64, 4), (4, 16, 64, 4), (4, 32, 64, 8), (2, 32, 128, 8))])


@triton.constexpr_function
def _window(win: int, kw: int) -> int:
    """Input columns a program projects per row: a power of two with room for one output
    column's ``kw`` taps."""
    return max(win, 1 << (kw - 1).bit_length())


@triton.constexpr_function
def _columns(window: int, kw: int, sw: int) -> int:
    """Output columns whose taps all lie in ``window`` input columns."""
    return (window - kw) // sw + 1


def _fit_configs(configs: list, named_args: dict, **kwargs) -> list:
    """The configs with ``BLOCK_N`` no larger than the output channels need (>= 16 for
    ``tl.dot``), duplicates dropped."""
    need = max(16, triton.next_power_of_2(named_args["N"]))
    fitted = {}
    for cfg in configs:
        meta = {**cfg.kwargs, "BLOCK_N": min(cfg.kwargs["BLOCK_N"], need)}
        key = (tuple(sorted(meta.items())), cfg.num_warps, cfg.num_stages)
        fitted.setdefault(key, triton.Config(meta, num_warps=cfg.num_warps,
                                             num_stages=cfg.num_stages))
    return list(fitted.values())


@triton.autotune(configs=_CONFIGS, key=["C", "H", "W", "R", "N", "KH", "KW", "SH", "SW"],
                 prune_configs_by={"early_config_prune": _fit_configs})
@triton.jit
def _cp_conv2d_kernel(x_ptr, u_in_ptr, k_v_ptr, k_h_ptr, u_out_ptr, bias_ptr, out_ptr,
                      C, H, W, R, N, Ho, Wo, PH, PW,
                      sxb, sxc, sxh, sxw, sur, suc, svr, svy, shr, shx, son, sor, sbn,
                      syb, syn, syh, syw,
                      KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                      HAS_BIAS: tl.constexpr,
                      BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
                      TH: tl.constexpr, WIN: tl.constexpr):
    BLOCK_WIN: tl.constexpr = _window(WIN, KW)
    WO_STEP: tl.constexpr = _columns(BLOCK_WIN, KW, SW)
    BLOCK_WO: tl.constexpr = triton.next_power_of_2(WO_STEP)
    ROWS: tl.constexpr = (TH - 1) * SH + KH

    # Builtins only (tl.full, not the @jit helpers tl.zeros and tl.cdiv): the interpreter cannot
    # call a helper jitted before TRITON_INTERPRET was set, as when triton was imported first.
    # Channel blocks vary fastest, so the programs that share an input window run together.
    pid = tl.program_id(0)
    n_blocks = (N + BLOCK_N - 1) // BLOCK_N
    w_blocks = (Wo + WO_STEP - 1) // WO_STEP
    h_blocks = (Ho + TH - 1) // TH
    nb = pid % n_blocks
    wb = (pid // n_blocks) % w_blocks
    hb = (pid // (n_blocks * w_blocks)) % h_blocks
    b = pid // (n_blocks * w_blocks * h_blocks)

    # Every offset is int64: the tensors may hold 2^31 elements or more.
    oh0 = hb.to(tl.int64) * TH
    wo0 = wb.to(tl.int64) * WO_STEP
    t = tl.arange(0, TH).to(tl.int64)
    j = tl.arange(0, BLOCK_WO)
    n = nb.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    # Zero padding: window columns and rows outside the image are masked to zero.
    iw = wo0 * SW - PW + tl.arange(0, BLOCK_WIN)
    iw_ok = (iw >= 0) & (iw < W)
    ih0 = oh0 * SH - PH
    x_img = x_ptr + b.to(tl.int64) * sxb + iw[:, None] * sxw
    # Output column j reads window column j * SW + kx; columns j >= WO_STEP are never stored,
    # so clamping their (out-of-window) taps is harmless.
    taps = tl.broadcast_to((j * SW)[None, :, None], (TH, BLOCK_WO, BLOCK_R))

    y = tl.full((TH * BLOCK_WO, BLOCK_N), 0.0, tl.float32)
    for r0 in range(0, R, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        r_ok = r < R
        z2 = tl.full((TH, BLOCK_WIN, BLOCK_R), 0.0, tl.float32)
        for i in range(ROWS):
            ih = ih0 + i
            if (ih >= 0) & (ih < H):
                z1 = tl.full((BLOCK_WIN, BLOCK_R), 0.0, tl.float32)
                for c0 in range(0, C, BLOCK_C):
                    c = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
                    c_ok = c < C
                    xt = tl.load(x_img + ih * sxh + c[None, :] * sxc,
                                 mask=iw_ok[:, None] & c_ok[None, :], other=0.0)
                    ut = tl.load(u_in_ptr + r[None, :] * sur + c[:, None] * suc,
                                 mask=c_ok[:, None] & r_ok[None, :], other=0.0)
                    # ieee: float32 products stay exact (no TF32); half operands use the
                    # tensor cores either way.
                    z1 = tl.dot(xt, ut, z1, input_precision="ieee")
                # Input row i is tap i - t * SH of output row t (no tap when out of [0, KH)).
                ky = i - t * SH
                kv = tl.load(k_v_ptr + r[None, :] * svr + ky[:, None] * svy,
                             mask=((ky >= 0) & (ky < KH))[:, None] & r_ok[None, :], other=0.0)
                z2 += kv.to(tl.float32)[:, None, :] * z1[None, :, :]
        z3 = tl.full((TH, BLOCK_WO, BLOCK_R), 0.0, tl.float32)
        for kx in tl.static_range(KW):
            kh = tl.load(k_h_ptr + r * shr + kx * shx, mask=r_ok, other=0.0).to(tl.float32)
            z3 += tl.gather(z2, tl.minimum(taps + kx, BLOCK_WIN - 1), 1) * kh[None, None, :]
        uo = tl.load(u_out_ptr + n[None, :] * son + r[:, None] * sor,
                     mask=r_ok[:, None] & n_ok[None, :], other=0.0)
        y = tl.dot(tl.reshape(z3, (TH * BLOCK_WO, BLOCK_R)).to(uo.dtype), uo, y,
                   input_precision="ieee")

    if HAS_BIAS:
        y += tl.load(bias_ptr + n * sbn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    oh = oh0 + t
    wo = wo0 + j
    pix = tl.reshape(oh[:, None] * syh + wo[None, :] * syw, (TH * BLOCK_WO,))
    pix_ok = tl.reshape((oh < Ho)[:, None] & ((j < WO_STEP) & (wo < Wo))[None, :],
                        (TH * BLOCK_WO,))
    tl.store(out_ptr + b.to(tl.int64) * syb + pix[:, None] + n[None, :] * syn,
             y.to(out_ptr.dtype.element_ty), mask=pix_ok[:, None] & n_ok[None, :])


@triton_op("emokernels::cp_conv2d_triton", mutates_args=())
def cp_conv2d_triton(x: torch.Tensor, u_in: torch.Tensor, k_v: torch.Tensor, k_h: torch.Tensor,
                     u_out: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                     padding: Sequence[int]) -> torch.Tensor:
    """The CP convolution as one Triton kernel launch (see :func:`emokernels.ops.cp_conv2d`).

    Args:
        x: ``[B, C, H, W]`` float32, float16 or bfloat16, any strides.
        u_in: ``[R, C]``; k_v: ``[R, kh]``; k_h: ``[R, kw]``; u_out: ``[N, R]``; bias:
            ``[N]`` or None; all of ``x``'s dtype and device, any strides.
        stride, padding: ``(sh, sw)`` and ``(ph, pw)``, zero padding.

    Returns:
        ``[B, N, Ho, Wo]`` in ``x``'s dtype and memory format. Accumulates in fp32; float32
        products are exact (no TF32).
    """
    shape = cp_conv2d_output_shape(x, u_in, k_v, k_h, u_out, bias, stride, padding,
                                   op="cp_conv2d_triton", dtypes=CP_DTYPES)
    out = torch.empty(shape, dtype=x.dtype, device=x.device,
                      memory_format=suggest_memory_format(x))
    b, c, h, w = x.shape
    _, n, ho, wo = shape
    r, kh, kw = u_in.shape[0], k_v.shape[1], k_h.shape[1]
    (sh, sw), (ph, pw) = stride, padding

    def grid(meta: dict) -> tuple[int]:
        columns = _columns(_window(meta["WIN"], kw), kw, sw)
        programs = (b * triton.cdiv(ho, meta["TH"]) * triton.cdiv(wo, columns)
                    * triton.cdiv(n, meta["BLOCK_N"]))
        torch._check(programs <= INT32_MAX,
                     lambda: f"cp_conv2d_triton: {programs} programs exceed the launch limit "
                             "of 2^31 - 1")
        return (programs,)

    wrap_triton(_cp_conv2d_kernel)[grid](
        x, u_in, k_v, k_h, u_out, bias, out,
        c, h, w, r, n, ho, wo, ph, pw,
        *x.stride(), *u_in.stride(), *k_v.stride(), *k_h.stride(), *u_out.stride(),
        bias.stride(0) if bias is not None else 0, *out.stride(),
        KH=kh, KW=kw, SH=sh, SW=sw, HAS_BIAS=bias is not None,
        BLOCK_C=min(64, max(16, triton.next_power_of_2(c))),
        BLOCK_R=min(32, max(16, triton.next_power_of_2(r))))
    return out


torch.library.register_autograd("emokernels::cp_conv2d_triton", cp_backward,
                                setup_context=setup_cp_context)
