// 2 MB pages for the large outputs the CPU GEMMs write.
#pragma once

#include <cstddef>
#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace emokernels {

// Asks Linux to back the whole 2 MB pages inside a fresh output of `bytes` with huge pages
// before the kernel first writes it (as PyTorch's THP_MEM_ALLOC_ENABLE does for every
// allocation): a 64 MB int32 output faulted in 4 KB at a time cost ~40 % of a 4096^3
// xnor_gemm. Advice only: contents and size are unchanged, and where the OS declines nothing
// else changes.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 4 * kHuge) return;  // a few pages: faults are cheap next to the syscall
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace emokernels
