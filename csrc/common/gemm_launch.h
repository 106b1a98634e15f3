// Host side of the CUDA GEMM (common/gemm_kernels.cuh), shared by the ops that use it
// (deform_conv2d, conv_transpose3d): the size check and the kernel choice, written once
// against a Launcher (real CUDA or the emulator).
#pragma once

#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <algorithm>

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
template <class Launcher, typename scalar_t, typename out_t>
void launch_gemm(const Launcher& launch, const char* op, const GemmOperand<scalar_t>& a,
                 const GemmOperand<scalar_t>& b, const GemmResult<out_t>& c, int64_t batches,
                 int64_t M, int64_t N, int64_t K) {
  TORCH_CHECK(gemm_sizes_fit(batches * c.split_k, M, N, K,
                              {a.fixed, a.depth, b.fixed, b.depth, c.rows, c.cols}),
              op, ": a GEMM dimension of 2^31 or more (M=", M, ", N=", N, ", K=", K,
              ") is not supported");
  const int64_t cap_x = launch.max_blocks(), cap_yz = std::min<int64_t>(cap_x, 65535);
  const int64_t tiles_m = (M + kGemmTileM - 1) / kGemmTileM;
  const int64_t tiles_n = (N + kGemmTileN - 1) / kGemmTileN;
  const dim3 grid(static_cast<unsigned>(std::min(tiles_n, cap_x)),
                  static_cast<unsigned>(std::min(tiles_m, cap_yz)),
                  static_cast<unsigned>(std::min(batches * c.split_k, cap_yz)));
  const int cc = launch.compute_capability();
  if constexpr (gemm_has_tensor_cores<scalar_t>) {
    if (cc >= 80 && (!std::is_same_v<scalar_t, float> || gemm_allow_tf32())) {
      launch(gemm_tc_kernel<scalar_t, out_t>, grid, dim3(kGemmThreads), 0, a, b, c, batches, M,
             N, K);
      return;
    }
  }
  if constexpr (gemm_can_copy_async<scalar_t>) {
    if (cc >= 80) {
      launch(gemm_kernel<scalar_t, out_t, true>, grid, dim3(kGemmThreads), 0, a, b, c, batches,
             M, N, K);
      return;
    }
  }
  launch(gemm_kernel<scalar_t, out_t, false>, grid, dim3(kGemmThreads), 0, a, b, c, batches, M,
         N, K);
}

}  // namespace pyseg
