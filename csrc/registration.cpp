// Every op schema of the emokernels library. Backends register kernels only.
#include <Python.h>
#include "common/library.h"

#include "common/cpu_features.h"
#include "cpu/paths.h"
#include "cpu/roof.h"

// The extension is loaded for its op registrations; it exposes no Python functions.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

namespace {
std::string cpu_features_op() { return emokernels::cpu_feature_string(); }
std::string cpu_isa_op() { return emokernels::cpu_isa_name(emokernels::active_cpu_isa()); }
std::string cpu_kernel_path_op(std::string op, std::string dtype, int64_t m, int64_t n,
                               int64_t channels) {
  return emokernels::cpu_kernel_path(op, dtype, m, n, channels);
}
std::tuple<double, std::string> cpu_roof_op(std::string kind, double seconds) {
  return emokernels::cpu_roof(kind, seconds);
}
bool cuda_compiled_op() {
#ifdef EMOKERNELS_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

EMOKERNELS_LIBRARY(m) {
  m.def("pack_bits(Tensor x) -> Tensor");
  m.def("pack_channels(Tensor x, Tensor lower, Tensor upper) -> Tensor");
  m.def("xnor_gemm(Tensor a_bits, Tensor b_bits, int k) -> Tensor");
  m.def(
      "xnor_gemm_scaled(Tensor a_bits, Tensor b_bits, int k, Tensor scale, Tensor? bias=None, "
      "Tensor? offset=None, Tensor? offset_index=None) -> Tensor");
  m.def(
      "xnor_gemm_sign(Tensor a_bits, Tensor b_bits, int k, Tensor bounds, Tensor? offset=None, "
      "Tensor? offset_index=None) -> Tensor");
  m.def("bwn_gemm(Tensor x, Tensor w_bits, Tensor alpha, int k) -> Tensor");
  m.def(
      "bwn_conv2d(Tensor x, Tensor w_bits, Tensor alpha, int[2] kernel_size, int[2] stride, "
      "int[2] dilation) -> Tensor");
  m.def(
      "hashed_linear(Tensor x, Tensor buckets, int out_features, int seed, int block, "
      "Tensor? bias=None) -> Tensor");
  m.def(
      "hashed_linear_backward(Tensor grad, Tensor x, Tensor buckets, int seed, int block, "
      "bool[2] output_mask, bool deterministic) -> (Tensor, Tensor)");

  m.def(
      "cp_conv2d(Tensor x, Tensor u_in, Tensor k_v, Tensor k_h, Tensor u_out, Tensor? bias, "
      "int[2] stride, int[2] padding) -> Tensor");

  m.def("cpu_features() -> str", &cpu_features_op);
  m.def("cpu_isa() -> str", &cpu_isa_op);
  m.def("cpu_kernel_path(str op, str dtype, int m=1, int n=1, int channels=1) -> str",
        &cpu_kernel_path_op);
  m.def("cpu_roof(str kind, float seconds=0.3) -> (float, str)", &cpu_roof_op);
  m.def("cuda_compiled() -> bool", &cuda_compiled_op);
}
