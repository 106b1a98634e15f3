// pyseg._C: the operator library `pyseg` (schemas in csrc/schemas.h; kernels in
// csrc/ops/<op>/) and a few build facts for pyseg.info().
#include <torch/extension.h>

#include "schemas.h"

namespace pyseg::cpu {
void bind_cpu(pybind11::module_& m);  // common/cpu_bindings.cpp
}

TORCH_LIBRARY(pyseg, m) { pyseg::define_schemas(m); }

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyseg's compiled operators (torch.ops.pyseg)";
  m.def("cuda_compiled", [] {
#ifdef PYSEG_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled into this build.");
  m.def("compiler", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  }, "The C++ compiler that built the host code.");
  pyseg::cpu::bind_cpu(m);
}
