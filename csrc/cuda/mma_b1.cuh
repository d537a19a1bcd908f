// The 1-bit tensor-core instruction the XNOR GEMM uses: PTX
// mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc (sm_80 and later; XOR is deprecated
// from sm_90, so AND + popc is the form every generation runs). d = c + popc(A AND B) over
// k = 256 for a 16 x 8 tile, a warp-wide collective. Fragments, with g = lane >> 2 and
// t = lane & 3, bit j of a register = element j of its 32:
//   a[0]: A row g, k 32t..;  a[1]: row g+8, k 32t..;  a[2]: row g, k 128+32t..;  a[3]: row g+8,
//   k 128+32t..;  b[0]: B column g, k 32t..;  b[1]: column g, k 128+32t..;
//   c/d[0..1]: (row g, columns 2t, 2t+1);  c/d[2..3]: (row g+8, columns 2t, 2t+1).
#pragma once

#include "device.cuh"

namespace emokernels::cuda {

__device__ inline void mma_b1_and_popc(int32_t d[4], const uint32_t a[4], const uint32_t b[2],
                                       const int32_t c[4]) {
#if defined(EMOKERNELS_CUDA_EMULATION)
  ek_emu::mma_b1_and_popc_m16n8k256(d, a, b, c);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]),
        "r"(c[2]), "r"(c[3]));
#else
  __trap();  // the launcher never picks this path below sm_80
#endif
}

}  // namespace emokernels::cuda
