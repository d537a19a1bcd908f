// HashedNets' virtual weight matrix, independent of any framework: the hash (xxh32 of the
// 8-byte key (uint32 i, uint32 j) little-endian, seeded), the bucket and sign it selects, and
// the scalar reference of one weight, shared by every backend. W[i, j] = sign * buckets[bucket]
// for row i (output unit) and column j (flattened input index); nothing of size rows x cols is
// ever stored.
//
// Block hashing (block = B > 1, a power of two): columns j = B*r .. B*r + B-1 form run r; one
// hash h of the key (i, r) gives the run's sign and its first bucket b0 = (h >> 1) % num_buckets,
// and column B*r + o reads bucket (b0 + o) % num_buckets. block = 1 is exact hashing.
#pragma once

#include "../common/std.h"

#include "../common/hd.h"

namespace emokernels::hashed {

constexpr uint32_t kPrime2 = 2246822519u;
constexpr uint32_t kPrime3 = 3266489917u;
constexpr uint32_t kPrime4 = 668265263u;
constexpr uint32_t kPrime5 = 374761393u;

EMOKERNELS_HD uint32_t rotl17(uint32_t v) { return (v << 17) | (v >> 15); }

// xxh32's state after the first 4 key bytes (uint32 i): computed once per row.
EMOKERNELS_HD uint32_t row_state(uint32_t i, uint32_t seed) {
  return rotl17(seed + kPrime5 + 8u + i * kPrime3) * kPrime4;
}

// xxh32 of the key (i, j) given row_state(i, seed): the second word, then the avalanche.
EMOKERNELS_HD uint32_t finish(uint32_t state, uint32_t j) {
  uint32_t h = rotl17(state + j * kPrime3) * kPrime4;
  h ^= h >> 15;
  h *= kPrime2;
  h ^= h >> 13;
  h *= kPrime3;
  h ^= h >> 16;
  return h;
}

// n % d for n < 2^31 by one 32x32->64 multiply: q = (n * magic) >> shift with
// magic = ceil(2^shift / d), shift = 31 + ceil(log2 d); exact for every n < 2^31, d <= 2^31.
struct FastMod {
  uint32_t d, magic, shift;

  EMOKERNELS_HD static FastMod make(uint32_t d) {
    uint32_t s = 0;
    while ((uint64_t{1} << s) < d) ++s;
    const uint64_t p = uint64_t{1} << (31 + s);
    return {d, static_cast<uint32_t>((p + d - 1) / d), 31 + s};
  }

  EMOKERNELS_HD uint32_t mod(uint32_t n) const {
    const uint32_t q = static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> shift);
    return n - q * d;
  }
};

struct HashedProblem {
  const float* buckets;
  FastMod nb;         // num_buckets
  uint32_t seed;
  uint32_t block_shift;  // log2(block)
  int64_t rows, cols;    // the virtual matrix W [rows, cols]
};

// The problem of W [rows, cols] over num_buckets buckets (checked by the op: <= 2^30) with
// block a power of two.
EMOKERNELS_HD HashedProblem make_problem(const float* buckets, int64_t num_buckets, int64_t seed,
                                  int64_t block, int64_t rows, int64_t cols) {
  uint32_t shift = 0;
  while ((int64_t{1} << shift) < block) ++shift;
  return {buckets, FastMod::make(static_cast<uint32_t>(num_buckets)),
          static_cast<uint32_t>(seed), shift, rows, cols};
}

// Bucket index in the low 31 bits, the sign in the top bit (set: -1): sign-flipping a float
// is an XOR of its sign bit, so code >> 31 << 31 XORed onto the bucket's bits gives W[i, j].
EMOKERNELS_HD uint32_t run_code(const HashedProblem& p, uint32_t state, uint32_t run) {
  const uint32_t h = finish(state, run);
  return p.nb.mod(h >> 1) | (h << 31);
}

// The code of W[i, j] given state = row_state(i, p.seed).
EMOKERNELS_HD uint32_t code_at(const HashedProblem& p, uint32_t state, uint32_t j) {
  const uint32_t c = run_code(p, state, j >> p.block_shift);
  const uint32_t offset = j & ((1u << p.block_shift) - 1u);
  if (offset == 0) return c;
  return p.nb.mod((c & 0x7FFFFFFFu) + offset) | (c & 0x80000000u);
}

EMOKERNELS_HD uint32_t code(const HashedProblem& p, uint32_t i, uint32_t j) {
  return code_at(p, row_state(i, p.seed), j);
}

EMOKERNELS_HD uint32_t bucket_of(uint32_t c) { return c & 0x7FFFFFFFu; }

EMOKERNELS_HD float apply_sign(uint32_t c, float v) { return (c >> 31) ? -v : v; }

// The reference of one virtual weight.
EMOKERNELS_HD float weight(const HashedProblem& p, uint32_t i, uint32_t j) {
  const uint32_t c = code(p, i, j);
  return apply_sign(c, p.buckets[bucket_of(c)]);
}

}  // namespace emokernels::hashed
