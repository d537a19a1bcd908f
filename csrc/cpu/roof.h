// The CPU's own ceilings, measured: see roof.cpp.
#pragma once

#include <string>
#include <tuple>

namespace emokernels {

// Operations per second of a register-only loop on all of ATen's threads, best of 3 runs of
// about seconds / 3 each (0.3 s by default), and a description of the loop. kind "popcount":
// binary MACs (bits XORed, counted and summed) in xnor_gemm's inner step on the path it takes;
// "fma": float32 FLOPs (a multiply-add is 2) of the widest vector FMA the CPU has; "lookup":
// multiply-free MACs of bwn_gemm's step for fewer than 8 rows of x on the path it takes.
std::tuple<double, std::string> cpu_roof(const std::string& kind, double seconds);

}  // namespace emokernels
