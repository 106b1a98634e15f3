// Python bindings for the CPU dispatch: what pyseg.info() reports, and test/benchmark hooks
// (select a capability, call the GEMM directly).
#include <torch/extension.h>

#include "common/cpu_capability.h"
#include "common/gemm.h"

namespace pyseg::cpu {
namespace {

template <typename T>
MatrixView<T> view_of(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.size(0), t.size(1), t.stride(0), t.stride(1)};
}

// out = a @ b (+ out with accumulate); pack = "a" / "b" prepacks that operand first.
void gemm_binding(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool accumulate,
                  const std::string& pack) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && out.dim() == 2, "_gemm: 2-d tensors expected");
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu() && out.device().is_cpu(),
              "_gemm: CPU tensors expected");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.scalar_type() == out.scalar_type(),
              "_gemm: one dtype expected");
  TORCH_CHECK(a.size(1) == b.size(0) && out.size(0) == a.size(0) && out.size(1) == b.size(1),
              "_gemm: sizes do not match");
  TORCH_CHECK(out.stride(1) == 1 || out.size(1) <= 1, "_gemm: out needs unit column stride");
  TORCH_CHECK(pack.empty() || pack == "a" || pack == "b", "_gemm: pack must be '', 'a' or 'b'");
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "_gemm", [&] {
    const auto av = view_of<scalar_t>(a), bv = view_of<scalar_t>(b);
    scalar_t* c = out.data_ptr<scalar_t>();
    const int64_t ldc = out.stride(0);
    if (pack == "a") {
      gemm<scalar_t>(pack_a(av), bv, c, ldc, accumulate);
    } else if (pack == "b") {
      gemm<scalar_t>(av, pack_b(bv), c, ldc, accumulate);
    } else {
      gemm<scalar_t>(av, bv, c, ldc, accumulate);
    }
  });
}

// The same with gathered operands (gemm.h's offset tables):
// A(i, j) = a[i * a_row_stride + a_col_offsets[j]], B(i, j) = b[b_row_offsets[i] + j * b_col_stride].
void gemm_gathered_binding(const at::Tensor& a, int64_t a_rows, int64_t a_row_stride,
                           const at::Tensor& a_col_offsets, const at::Tensor& b,
                           const at::Tensor& b_row_offsets, int64_t b_cols, int64_t b_col_stride,
                           at::Tensor& out, const std::string& pack) {
  TORCH_CHECK(a.dim() == 1 && b.dim() == 1 && a.is_contiguous() && b.is_contiguous(),
              "_gemm_gathered: a and b must be contiguous 1-d tensors");
  TORCH_CHECK(a_col_offsets.scalar_type() == at::kLong && b_row_offsets.scalar_type() == at::kLong &&
                  a_col_offsets.is_contiguous() && b_row_offsets.is_contiguous(),
              "_gemm_gathered: offsets must be contiguous int64 tensors");
  const int64_t k = a_col_offsets.numel();
  TORCH_CHECK(k == b_row_offsets.numel(), "_gemm_gathered: a has ", k, " columns, b ",
              b_row_offsets.numel(), " rows");
  TORCH_CHECK(out.dim() == 2 && out.size(0) == a_rows && out.size(1) == b_cols &&
                  out.stride(1) == 1 && out.scalar_type() == a.scalar_type() &&
                  b.scalar_type() == a.scalar_type(),
              "_gemm_gathered: out must be (a_rows, b_cols), unit column stride, one dtype");
  const int64_t* ao = a_col_offsets.const_data_ptr<int64_t>();
  const int64_t* bo = b_row_offsets.const_data_ptr<int64_t>();
  for (int64_t j = 0; j < k; ++j) {
    TORCH_CHECK(ao[j] >= 0 && (a_rows == 0 || (a_rows - 1) * a_row_stride + ao[j] < a.numel()),
                "_gemm_gathered: a offset out of range");
    TORCH_CHECK(bo[j] >= 0 && (b_cols == 0 || bo[j] + (b_cols - 1) * b_col_stride < b.numel()),
                "_gemm_gathered: b offset out of range");
  }
  TORCH_CHECK(pack.empty() || pack == "a" || pack == "b", "_gemm_gathered: pack must be '', 'a' or 'b'");
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "_gemm_gathered", [&] {
    MatrixView<scalar_t> av(a.const_data_ptr<scalar_t>(), a_rows, k, a_row_stride);
    av.col_offsets = ao;
    MatrixView<scalar_t> bv(b.const_data_ptr<scalar_t>(), k, b_cols, 0, b_col_stride);
    bv.row_offsets = bo;
    scalar_t* c = out.data_ptr<scalar_t>();
    if (pack == "a") {
      gemm<scalar_t>(pack_a(av), bv, c, out.stride(0));
    } else if (pack == "b") {
      gemm<scalar_t>(av, pack_b(bv), c, out.stride(0));
    } else {
      gemm<scalar_t>(av, bv, c, out.stride(0));
    }
  });
}

std::vector<std::string> compiled_names() {
  std::vector<std::string> out;
  for (Capability c : compiled_capabilities()) out.emplace_back(capability_name(c));
  return out;
}

}  // namespace

void bind_cpu(pybind11::module_& m) {
  m.def("cpu_capability", [] { return std::string(capability_name(active_capability())); },
        "The CPU capability pyseg's CPU kernels run with (default, avx2, avx512).");
  m.def("cpu_capability_supported",
        [] { return std::string(capability_name(supported_capability())); },
        "The best capability this CPU (and torch's ATEN_CPU_CAPABILITY) allows.");
  m.def("cpu_capabilities_compiled", &compiled_names,
        "The capability variants compiled into this build.");
  m.def("_set_cpu_capability",
        [](const std::string& name) {
          return std::string(capability_name(
              set_active_capability(parse_capability(name, "capability"))));
        },
        "Select the kernels' capability (clamped to what the CPU supports); returns the one "
        "selected. For tests and benchmarks.");
  m.def("_gemm", &gemm_binding, "out = a @ b with pyseg's CPU GEMM (tests, benchmarks).",
        pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("out"),
        pybind11::arg("accumulate") = false, pybind11::arg("pack") = "");
  m.def("_gemm_gathered", &gemm_gathered_binding,
        "out = A @ B with gathered operands (offset tables; tests).", pybind11::arg("a"),
        pybind11::arg("a_rows"), pybind11::arg("a_row_stride"), pybind11::arg("a_col_offsets"),
        pybind11::arg("b"), pybind11::arg("b_row_offsets"), pybind11::arg("b_cols"),
        pybind11::arg("b_col_stride"), pybind11::arg("out"), pybind11::arg("pack") = "");
  m.def("_fma_probe", [](int64_t iters) {
    float checksum = 0;
    const double flops = fma_probe_stub()(iters, &checksum);
    return std::make_pair(flops, checksum);
  }, "Run the peak-FMA probe on every thread; returns (flops, checksum).");
  m.def("_gemm_tile", [](const std::string& dtype) {
    const GemmTile t = dtype == "float64" ? gemm_tile<double>() : gemm_tile<float>();
    return std::make_pair(t.mr, t.nr);
  }, "The micro-kernel tile (MR, NR) in use for float32 or float64.");
}

}  // namespace pyseg::cpu
