// Host side of the CUDA GEMM (common/gemm_kernels.cuh), shared by the ops that use it
// (deform_conv2d, conv_transpose3d): the size check and the kernel choice, written once
// against a Launcher (real CUDA or the emulator).
#pragma once

#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "common/gemm_kernels.cuh"

namespace pyseg {

// Whether float32 products may use TF32 tensor cores: torch's matmul flag
// (torch.backends.cuda.matmul.allow_tf32, or torch.set_float32_matmul_precision("high" /
// "medium")), read on the host at every launch. Not cuDNN's flag, although the callers are
// convolutions: that one is on by default, and pyseg's float32 results stay exact (like its
// CPU kernels) unless the user asks for TF32.
inline bool gemm_allow_tf32() { return at::globalContext().allowTF32CuBLAS(); }

// C = A B (+ bias) for `batches` problems on the launcher's stream. The grid covers the tiles
// up to the launcher's cap (the emulator's is small, so the kernel's grid-stride loops run in
// tests too). On sm_80+ half and bfloat16 run on tensor cores (gemm_tc_kernel), and so does
// float when gemm_allow_tf32(); otherwise the FMA kernel, float operands staged with
// cp.async on sm_80+, everything else (double, older GPUs) through registers. `op` names the
// caller in the error for sizes the 32-bit index math cannot hold.
namespace detail {

// The grid of a GEMM launch (tiles up to the launcher's caps).
template <class Launcher>
dim3 gemm_grid(const Launcher& launch, int64_t batches_x_splits, int64_t M, int64_t N) {
  const int64_t cap_x = launch.max_blocks(), cap_yz = std::min<int64_t>(cap_x, 65535);
  const int64_t tiles_m = (M + kGemmTileM - 1) / kGemmTileM;
  const int64_t tiles_n = (N + kGemmTileN - 1) / kGemmTileN;
  return dim3(static_cast<unsigned>(std::min(tiles_n, cap_x)),
              static_cast<unsigned>(std::min(tiles_m, cap_yz)),
              static_cast<unsigned>(std::min(batches_x_splits, cap_yz)));
}

// Launches the tensor-core, cp.async FMA or register FMA kernel (see launch_gemm).
template <class Launcher, class Tc, class Async, class Fma, class... Args>
void gemm_pick(const Launcher& launch, bool is_float, bool has_tc, bool can_async, dim3 grid,
               Tc tc, Async async, Fma fma, const Args&... args) {
  const int cc = launch.compute_capability();
  if (has_tc && cc >= 80 && (!is_float || gemm_allow_tf32()))
    launch(tc, grid, dim3(kGemmThreads), 0, args...);
  else if (can_async && cc >= 80)
    launch(async, grid, dim3(kGemmThreads), 0, args...);
  else
    launch(fma, grid, dim3(kGemmThreads), 0, args...);
}

}  // namespace detail

template <class Launcher, typename scalar_t, typename out_t>
void launch_gemm(const Launcher& launch, const char* op, const GemmOperand<scalar_t>& a,
                 const GemmOperand<scalar_t>& b, const GemmResult<out_t>& c, int64_t batches,
                 int64_t M, int64_t N, int64_t K) {
  TORCH_CHECK(gemm_sizes_fit(batches * c.split_k, M, N, K,
                              {a.fixed, a.depth, b.fixed, b.depth, c.rows, c.cols}),
              op, ": a GEMM dimension of 2^31 or more (M=", M, ", N=", N, ", K=", K,
              ") is not supported");
  const dim3 grid = detail::gemm_grid(launch, batches * c.split_k, M, N);
  constexpr bool kTc = gemm_has_tensor_cores<scalar_t>, kAsync = gemm_can_copy_async<scalar_t>;
  // (Kernels that cannot apply are replaced by the FMA one: never launched.)
  auto fma = gemm_kernel<scalar_t, out_t, false>;
  auto tc = [&] {
    if constexpr (kTc) return gemm_tc_kernel<scalar_t, out_t>; else return fma;
  }();
  auto async = [&] {
    if constexpr (kAsync) return gemm_kernel<scalar_t, out_t, true>; else return fma;
  }();
  detail::gemm_pick(launch, std::is_same_v<scalar_t, float>, kTc, kAsync, grid, tc, async, fma,
                    a, b, c, batches, M, N, K);
}

// Whether launch_gemm_conv takes these sizes (the 32-bit index arithmetic of both kernels).
template <typename scalar_t>
bool gemm_conv_fits(int64_t batches_x_splits, int64_t M, int64_t N, int64_t K,
                    const GemmOperand<scalar_t>& a, const GemmConvOperand<scalar_t>& b,
                    std::initializer_list<GemmIndex> result) {
  bool ok = gemm_sizes_fit(batches_x_splits, M, N, K, {a.fixed, a.depth});
  for (const GemmIndex& idx : result) ok = ok && idx.run > 0 && idx.run <= INT32_MAX;
  return ok && gemm_conv_axis_fits(b.fixed, N) && gemm_conv_axis_fits(b.depth, K) &&
         b.lim_h >= 0 && b.lim_w >= 0;
}

// C = A B (+ bias) with B an implicit im2col (GemmConvOperand): the same kernel choice as
// launch_gemm (gemm_tc_conv_kernel / gemm_conv_kernel). The caller checks gemm_conv_fits.
template <class Launcher, typename scalar_t, typename out_t>
void launch_gemm_conv(const Launcher& launch, const GemmOperand<scalar_t>& a,
                      const GemmConvOperand<scalar_t>& b, const GemmResult<out_t>& c,
                      int64_t batches, int64_t M, int64_t N, int64_t K) {
  const dim3 grid = detail::gemm_grid(launch, batches * c.split_k, M, N);
  constexpr bool kTc = gemm_has_tensor_cores<scalar_t>, kAsync = gemm_can_copy_async<scalar_t>;
  auto fma = gemm_conv_kernel<scalar_t, out_t, false>;
  auto tc = [&] {
    if constexpr (kTc) return gemm_tc_conv_kernel<scalar_t, out_t>; else return fma;
  }();
  auto async = [&] {
    if constexpr (kAsync) return gemm_conv_kernel<scalar_t, out_t, true>; else return fma;
  }();
  detail::gemm_pick(launch, std::is_same_v<scalar_t, float>, kTc, kAsync, grid, tc, async, fma,
                    a, b, c, batches, M, N, K);
}

}  // namespace pyseg
