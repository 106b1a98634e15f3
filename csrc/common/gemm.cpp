// The GEMM's entry points (baseline code): pick the capability's kernels, or at::mm with
// PYSEG_GEMM=aten. See gemm.h.
#include "common/gemm.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

namespace pyseg::cpu {

CpuStub<GemmFn<float>> gemm_f32_stub;
CpuStub<GemmFn<double>> gemm_f64_stub;
CpuStub<PackFn<float>> pack_a_f32_stub, pack_b_f32_stub;
CpuStub<PackFn<double>> pack_a_f64_stub, pack_b_f64_stub;
CpuStub<TileFn> tile_f32_stub, tile_f64_stub;
CpuStub<double (*)(int64_t, float*)> fma_probe_stub;

namespace {

template <typename T>
struct Stubs;
template <>
struct Stubs<float> {
  static auto& gemm() { return gemm_f32_stub; }
  static auto& pack_a() { return pack_a_f32_stub; }
  static auto& pack_b() { return pack_b_f32_stub; }
  static auto& tile() { return tile_f32_stub; }
};
template <>
struct Stubs<double> {
  static auto& gemm() { return gemm_f64_stub; }
  static auto& pack_a() { return pack_a_f64_stub; }
  static auto& pack_b() { return pack_b_f64_stub; }
  static auto& tile() { return tile_f64_stub; }
};

template <typename T>
at::Tensor as_tensor(const MatrixView<T>& v) {
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  if (v.gathered()) {  // at::mm needs a strided matrix: copy the gathered view
    at::Tensor t = at::empty({v.rows, v.cols}, options);
    T* d = t.data_ptr<T>();
    for (int64_t i = 0; i < v.rows; ++i)
      for (int64_t j = 0; j < v.cols; ++j) d[i * v.cols + j] = v.data[v.offset(i, j)];
    return t;
  }
  return at::from_blob(const_cast<T*>(v.data), {v.rows, v.cols}, {v.row_stride, v.col_stride},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

template <typename T>
PackedMatrix<T> pack(const MatrixView<T>& v, bool is_a) {
  PackedMatrix<T> p;
  p.rows = v.rows;
  p.cols = v.cols;
  p.is_a = is_a;
  p.source = v;
  if (gemm_uses_aten()) return p;  // at::mm reads the source itself
  p.capability = active_capability();
  const GemmTile t = Stubs<T>::tile().for_capability(p.capability)();
  const int64_t k = is_a ? v.cols : v.rows, edge = is_a ? v.rows : v.cols;
  const int64_t step = is_a ? t.mr : t.nr;
  p.data.resize((edge + step - 1) / step * step * k);
  if (!p.data.empty()) (is_a ? Stubs<T>::pack_a() : Stubs<T>::pack_b()).for_capability(p.capability)(v, p.data.data());
  return p;
}

}  // namespace

bool gemm_uses_aten() {
  static const bool aten = [] {
    const char* env = std::getenv("PYSEG_GEMM");
    const std::string v = env ? env : "";
    TORCH_CHECK(v.empty() || v == "pyseg" || v == "aten",
                "PYSEG_GEMM must be 'pyseg' or 'aten'; got '", v, "'");
    return v == "aten";
  }();
  return aten;
}

template <typename T>
void gemm(const GemmOperand<T>& a, const GemmOperand<T>& b, T* c, int64_t ldc, bool accumulate) {
  const int64_t m = a.rows(), k = a.cols(), n = b.cols();
  TORCH_CHECK(b.rows() == k, "gemm: inner sizes differ (", k, " vs ", b.rows(), ")");
  TORCH_CHECK(!a.packed || a.packed->is_a, "gemm: a was packed as a right-hand operand");
  TORCH_CHECK(!b.packed || !b.packed->is_a, "gemm: b was packed as a left-hand operand");
  if (m == 0 || n == 0) return;
  if (gemm_uses_aten()) {
    at::Tensor C = at::from_blob(c, {m, n}, {ldc, 1},
                                 at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    const at::Tensor A = as_tensor(a.packed ? a.packed->source : a.view);
    const at::Tensor B = as_tensor(b.packed ? b.packed->source : b.view);
    if (accumulate) {
      C.addmm_(A, B);
    } else {
      at::mm_out(C, A, B);
    }
    return;
  }
  // A packed operand fixes the capability (its layout is that capability's tile).
  Capability cap = active_capability();
  if (a.packed) cap = a.packed->capability;
  if (b.packed) {
    TORCH_CHECK(!a.packed || b.packed->capability == cap,
                "gemm: operands packed for different CPU capabilities");
    cap = b.packed->capability;
  }
  const GemmArgs<T> args{m, n, k, a.view, a.packed ? a.packed->data.data() : nullptr,
                         b.view, b.packed ? b.packed->data.data() : nullptr, c, ldc, accumulate};
  Stubs<T>::gemm().for_capability(cap)(args);
}

template <typename T>
PackedMatrix<T> pack_a(const MatrixView<T>& a) {
  return pack(a, true);
}
template <typename T>
PackedMatrix<T> pack_b(const MatrixView<T>& b) {
  return pack(b, false);
}
template <typename T>
GemmTile gemm_tile() {
  return Stubs<T>::tile()()();
}

template void gemm<float>(const GemmOperand<float>&, const GemmOperand<float>&, float*, int64_t, bool);
template void gemm<double>(const GemmOperand<double>&, const GemmOperand<double>&, double*, int64_t, bool);
template PackedMatrix<float> pack_a<float>(const MatrixView<float>&);
template PackedMatrix<double> pack_a<double>(const MatrixView<double>&);
template PackedMatrix<float> pack_b<float>(const MatrixView<float>&);
template PackedMatrix<double> pack_b<double>(const MatrixView<double>&);
template GemmTile gemm_tile<float>();
template GemmTile gemm_tile<double>();

}  // namespace pyseg::cpu
