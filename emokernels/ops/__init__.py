"""Typed wrappers of the ``torch.ops.emokernels`` custom ops; modules call these, never _C."""

from ._words import words_for_bits
from .bwn_conv2d import bwn_conv2d, unpack_conv_weight
from .bwn_gemm import bwn_gemm
from .cp_conv2d import cp_conv2d, cp_conv2d_reference, cp_dense_weight
from .hashed_linear import dense_hashed_weight, hashed_codes, hashed_linear, xxh32_pairs
from .pack_bits import pack_bits, unpack_bits
from .pack_channels import pack_channels
from .xnor_gemm import xnor_gemm
from .xnor_gemm_scaled import xnor_gemm_scaled
from .xnor_gemm_sign import xnor_gemm_sign

__all__ = ["bwn_conv2d", "bwn_gemm", "cp_conv2d", "cp_conv2d_reference", "cp_dense_weight",
           "dense_hashed_weight", "hashed_codes", "hashed_linear",
           "pack_bits", "pack_channels", "unpack_bits", "unpack_conv_weight",
           "words_for_bits", "xnor_gemm", "xnor_gemm_scaled", "xnor_gemm_sign", "xxh32_pairs"]
