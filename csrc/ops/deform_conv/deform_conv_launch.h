// deform_conv2d host code for the CUDA kernels, written once against a Launcher (real CUDA in
// deform_conv_cuda.cu, the CPU emulator in deform_conv_emu.cpp).
//
// Images are processed in chunks whose column matrix stays below kMaxColumnElements: the
// im2col kernel fills it, and the hand-written tiled GEMM of common/gemm_kernels.cuh (no
// cuBLAS; float16/bfloat16 accumulate in float32) multiplies it by every weight group's
// slice, writing straight into the (N, C_out, H_out, W_out) output with the bias added. The
// backward pass forms the column gradient W_g^T @ grad_out_g with the same kernel (reading
// W transposed and grad_output in place) before the col2im and coordinate-gradient kernels,
// and accumulates grad_weight += grad_out_g @ cols_g^T chunk after chunk (each element owned
// by one thread, so the result is deterministic). The gather / scatter kernels use 32-bit
// index arithmetic when every index fits (index_bound), 64-bit otherwise.
#pragma once

#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "common/gemm_launch.h"
#include "common/launch_utils.h"
#include "ops/deform_conv/deform_conv.h"
#include "ops/deform_conv/deform_conv_kernels.cuh"

namespace pyseg::deform_conv {

constexpr int64_t kMaxColumnElements = int64_t{1} << 26;

inline int64_t images_per_chunk(const Shape& s) {
  const int64_t per_image = std::max<int64_t>(1, s.channels * s.taps() * s.out_plane());
  return std::max<int64_t>(1, std::min<int64_t>(s.batch, kMaxColumnElements / per_image));
}

template <typename index_t>
KernelGeometry<index_t> kernel_geometry(const Shape& s, const Params& p, int64_t chunk) {
  const auto i = [](int64_t v) { return static_cast<index_t>(v); };
  return KernelGeometry<index_t>{i(s.channels), i(s.in_h),     i(s.in_w),     i(s.out_h),
                                 i(s.out_w),    i(s.kernel_h), i(s.kernel_w), i(p.stride_h),
                                 i(p.stride_w), i(p.pad_h),    i(p.pad_w),    i(p.dil_h),
                                 i(p.dil_w),    i(p.offset_groups), i(chunk), p.use_mask};
}

// The largest magnitude an index expression of the kernels reaches: offsets into input,
// offset, mask (and their gradients, of the same shapes) and one chunk's columns; a
// sampling row or column oy * stride - pad + i * dil, within in + 2 * pad (output_extent);
// a corner's position in the plane, from (-4, -4) to (in_h, in_w) (corners).
inline int64_t index_bound(const Shape& s, const Params& p, const at::Tensor& input,
                           const at::Tensor& offset, const at::Tensor& mask, int64_t chunk) {
  return std::max({input.numel(), offset.numel(), mask.numel(),
                   s.channels * s.taps() * chunk * s.out_plane(), s.in_h + 2 * p.pad_h,
                   s.in_w + 2 * p.pad_w, (s.in_h + 4) * (s.in_w + 4)});
}

// Calls fn.template operator()<index_t>() with int32_t when every index fits in the largest
// of the op's launches (a thread per column element, and a grid-stride step past the
// bound), int64_t otherwise.
template <class Launcher, class Fn>
void with_index_type(const Launcher& launch, const Shape& s, int64_t chunk, int64_t bound,
                     const Fn& fn) {
  const dim3 grid = grid_for(launch, s.channels * s.taps() * chunk * s.out_plane());
  if (fits_int32(launch, grid, dim3(kThreadsPerBlock), bound))
    fn.template operator()<int32_t>();
  else
    fn.template operator()<int64_t>();
}

// A plain strided dimension (a single run) and one that runs over (image, pixel) pairs.
inline GemmIndex dense_index(int64_t stride) { return gemm_dense_index(stride); }
inline GemmIndex image_pixel_index(int64_t pixels, int64_t image_stride) {
  return GemmIndex{1, pixels, image_stride};
}

// C = A B (+ bias) for `batches` problems (the weight groups): common/gemm_launch.h.
template <class Launcher, typename scalar_t, typename out_t>
void gemm(const Launcher& launch, const GemmOperand<scalar_t>& a, const GemmOperand<scalar_t>& b,
          const GemmResult<out_t>& c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  launch_gemm(launch, "deform_conv2d", a, b, c, batches, M, N, K);
}

// Split-K for a product with few output tiles and a long k: enough splits to give the device
// about kSplitTargetBlocks blocks, each split at least kMinSplitK long. The count depends on
// the shapes alone, so the summation order (and the result) is the same on every run and
// every device.
constexpr int64_t kSplitTargetBlocks = 256;
constexpr int64_t kMinSplitK = 256;
constexpr int64_t kMaxSplits = 64;

inline int64_t split_count(int64_t batches, int64_t M, int64_t N, int64_t K) {
  const int64_t tiles = batches * ((M + kGemmTileM - 1) / kGemmTileM) *
                        ((N + kGemmTileN - 1) / kGemmTileN);
  int64_t splits = std::clamp<int64_t>(kSplitTargetBlocks / std::max<int64_t>(1, tiles), 1,
                                       kMaxSplits);
  return std::max<int64_t>(1, std::min(splits, K / kMinSplitK));
}

// out += A B for contiguous out ([batches, M, N] with rows.stride == N): split-K when
// split_count says so (partial sums in the accumulator type, added in split order by
// gemm_sum_splits_kernel), a single accumulating GEMM otherwise.
template <class Launcher, typename scalar_t>
void gemm_accumulate(const Launcher& launch, const GemmOperand<scalar_t>& a,
                     const GemmOperand<scalar_t>& b, const at::Tensor& out, int64_t batches,
                     int64_t M, int64_t N, int64_t K) {
  using acc_t = at::opmath_type<scalar_t>;
  scalar_t* c = out.data_ptr<scalar_t>();
  int64_t splits = split_count(batches, M, N, K);
  if (splits == 1) {
    gemm(launch, a, b,
         GemmResult<scalar_t>{c, M * N, dense_index(N), dense_index(1), nullptr, 0, true}, batches,
         M, N, K);
    return;
  }
  int64_t split_len = (K + splits - 1) / splits;
  split_len = (split_len + kGemmTileK - 1) / kGemmTileK * kGemmTileK;
  splits = (K + split_len - 1) / split_len;  // no empty split
  const int64_t numel = batches * M * N;
  at::Tensor partial =
      at::empty({splits, numel}, out.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  gemm(launch, a, b,
       GemmResult<acc_t>{partial.data_ptr<acc_t>(), M * N, dense_index(N), dense_index(1), nullptr,
                         0, false, splits, split_len, numel},
       batches, M, N, K);
  launch(gemm_sum_splits_kernel<scalar_t, acc_t>, grid_for(launch, numel),
         dim3(kThreadsPerBlock), 0, partial.const_data_ptr<acc_t>(), c, splits, numel, true);
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input_, const at::Tensor& weight_,
                   const at::Tensor& offset_, const at::Tensor& mask_, const at::Tensor& bias_,
                   const Params& p) {
  const Shape s = check(input_, weight_, offset_, mask_, bias_, p);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor input = input_.contiguous(), weight = weight_.contiguous();
  const at::Tensor offset = offset_.contiguous(), mask = mask_.contiguous();
  const int64_t out_numel = s.batch * s.out_channels * s.out_plane();
  if (out_numel == 0 || s.channels == 0) {
    // No GEMM to run: the output is the bias alone.
    at::Tensor out = at::zeros({s.batch, s.out_channels, s.out_h, s.out_w}, input.options());
    if (out.numel() > 0) out.add_(bias_.view({1, -1, 1, 1}));
    return out;
  }
  // Every element is written by the GEMM (bias included), so no zero fill.
  at::Tensor out = at::empty({s.batch, s.out_channels, s.out_h, s.out_w}, input.options());
  const at::Tensor bias = bias_.contiguous();
  const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K;
  const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
  const int64_t chunk = images_per_chunk(s);
  const int64_t bound = index_bound(s, p, input, offset, mask, chunk);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d", [&] {
    with_index_type(launch, s, chunk, bound, [&]<typename index_t>() {
      for (int64_t b0 = 0; b0 < s.batch; b0 += chunk) {
        const int64_t nb = std::min(chunk, s.batch - b0);
        const KernelGeometry<index_t> g = kernel_geometry<index_t>(s, p, nb);
        at::Tensor cols = at::empty({CK, nb * P}, input.options());
        launch(im2col_kernel<scalar_t, index_t>, grid_for(launch, s.channels * nb * P),
               dim3(kThreadsPerBlock), 0,
               input.const_data_ptr<scalar_t>() + b0 * s.channels * s.in_plane(),
               offset.const_data_ptr<scalar_t>() + b0 * offset.size(1) * P,
               p.use_mask ? mask.const_data_ptr<scalar_t>() + b0 * mask.size(1) * P
                          : mask.const_data_ptr<scalar_t>(),
               cols.data_ptr<scalar_t>(), g);
        // Per group: out[b0 + b, g * Og + o, p] =
        //   sum_r W[g * Og + o, r] * cols[g * CgK + r, b * P + p] + bias[g * Og + o];
        // column b * P + p of the product lands in image b's plane.
        const GemmOperand<scalar_t> w_op{weight.const_data_ptr<scalar_t>(), Og * CgK,
                                         dense_index(CgK), dense_index(1)};
        const GemmOperand<scalar_t> cols_op{cols.const_data_ptr<scalar_t>(), CgK * nb * P,
                                            dense_index(1), dense_index(nb * P)};
        const GemmResult<scalar_t> out_res{out.data_ptr<scalar_t>() + b0 * s.out_channels * P,
                                           Og * P,
                                           dense_index(P),
                                           image_pixel_index(P, s.out_channels * P),
                                           bias.const_data_ptr<scalar_t>(),
                                           Og,
                                           false};
        gemm(launch, w_op, cols_op, out_res, G, Og, nb * P, CgK);
      }
    });
  });
  return out;
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Launcher& launch, const at::Tensor& grad_, const at::Tensor& input_,
    const at::Tensor& weight_, const at::Tensor& offset_, const at::Tensor& mask_,
    const at::Tensor& bias_, const Params& p) {
  const Shape s = check(input_, weight_, offset_, mask_, bias_, p);
  check_grad(grad_, s);
  TORCH_CHECK(grad_.scalar_type() == input_.scalar_type() && grad_.device() == input_.device(),
              "deform_conv2d_backward: grad must have input's dtype and device");
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor grad = grad_.contiguous(), input = input_.contiguous();
  const at::Tensor weight = weight_.contiguous(), offset = offset_.contiguous();
  const at::Tensor mask = mask_.contiguous();
  at::Tensor gi = at::zeros_like(input), gw = at::zeros_like(weight);
  at::Tensor go = at::zeros_like(offset), gm = at::zeros_like(mask);
  if (grad.numel() > 0 && s.channels > 0) {
    const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K;
    const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
    const int64_t chunk = images_per_chunk(s);
    // The atomic scatter's summation order varies from run to run; under
    // torch.use_deterministic_algorithms(True) each thread owns an (image, channel) plane.
    const bool deterministic = at::globalContext().deterministicAlgorithms();
    const int64_t bound = index_bound(s, p, input, offset, mask, chunk);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_backward", [&] {
      with_index_type(launch, s, chunk, bound, [&]<typename index_t>() {
        for (int64_t b0 = 0; b0 < s.batch; b0 += chunk) {
          const int64_t nb = std::min(chunk, s.batch - b0);
          const KernelGeometry<index_t> g = kernel_geometry<index_t>(s, p, nb);
          const scalar_t* in = input.const_data_ptr<scalar_t>() + b0 * s.channels * s.in_plane();
          const scalar_t* off = offset.const_data_ptr<scalar_t>() + b0 * offset.size(1) * P;
          const scalar_t* mk = p.use_mask ? mask.const_data_ptr<scalar_t>() + b0 * mask.size(1) * P
                                          : mask.const_data_ptr<scalar_t>();
          at::Tensor cols = at::empty({CK, nb * P}, input.options());
          at::Tensor gcols = at::empty({CK, nb * P}, input.options());
          launch(im2col_kernel<scalar_t, index_t>, grid_for(launch, s.channels * nb * P),
                 dim3(kThreadsPerBlock), 0, in, off, mk, cols.data_ptr<scalar_t>(), g);
          const scalar_t* gout = grad.const_data_ptr<scalar_t>() + b0 * s.out_channels * P;
          // gcols_g [CgK x nb*P] = W_g^T [CgK x Og] @ gout_g [Og x nb*P]: W read transposed,
          // grad_output read in place (column b * P + p is pixel p of image b).
          gemm(launch,
               GemmOperand<scalar_t>{weight.const_data_ptr<scalar_t>(), Og * CgK, dense_index(1),
                                     dense_index(CgK)},
               GemmOperand<scalar_t>{gout, Og * P, image_pixel_index(P, s.out_channels * P),
                                     dense_index(P)},
               GemmResult<scalar_t>{gcols.data_ptr<scalar_t>(), CgK * nb * P, dense_index(nb * P),
                                    dense_index(1), nullptr, 0, false},
               G, CgK, nb * P, Og);
          // gw_g [Og x CgK] += gout_g [Og x nb*P] @ cols_g^T [nb*P x CgK], summed over this
          // chunk's images in a fixed order and added to the previous chunks' sum (split-K:
          // few output tiles, k = nb * P long).
          gemm_accumulate(launch,
                          GemmOperand<scalar_t>{gout, Og * P, dense_index(P),
                                                image_pixel_index(P, s.out_channels * P)},
                          GemmOperand<scalar_t>{cols.const_data_ptr<scalar_t>(), CgK * nb * P,
                                                dense_index(nb * P), dense_index(1)},
                          gw, G, Og, CgK, nb * P);
          launch(coord_grad_kernel<scalar_t, index_t>,
                 grid_for(launch, nb * s.offset_groups * K * P), dim3(kThreadsPerBlock), 0,
                 gcols.const_data_ptr<scalar_t>(), in, off, mk,
                 go.data_ptr<scalar_t>() + b0 * offset.size(1) * P,
                 p.use_mask ? gm.data_ptr<scalar_t>() + b0 * mask.size(1) * P
                            : gm.data_ptr<scalar_t>(),
                 g);
          scalar_t* gin = gi.data_ptr<scalar_t>() + b0 * s.channels * s.in_plane();
          if (deterministic)
            launch(col2im_plane_kernel<scalar_t, index_t>, grid_for(launch, nb * s.channels),
                   dim3(kThreadsPerBlock), 0, gcols.const_data_ptr<scalar_t>(), off, mk, gin, g);
          else
            launch(col2im_atomic_kernel<scalar_t, index_t>, grid_for(launch, CK * nb * P),
                   dim3(kThreadsPerBlock), 0, gcols.const_data_ptr<scalar_t>(), off, mk, gin, g);
        }
      });
    });
  }
  at::Tensor gb = grad.sum({0, 2, 3});
  return {gi, gw, go, gm, gb};
}

// The operator signatures (the schema's flat argument lists), bound by the twins
// deform_conv_cuda.cu and deform_conv_emu.cpp.
template <class Launcher>
at::Tensor forward_op(const Launcher& launch, const at::Tensor& input, const at::Tensor& weight,
                      const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& bias,
                      int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                      int64_t dil_h, int64_t dil_w, int64_t groups, int64_t offset_groups,
                      bool use_mask) {
  return forward(launch, input, weight, offset, mask, bias,
                 Params{stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups,
                        use_mask});
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const Launcher& launch, const at::Tensor& grad, const at::Tensor& input,
    const at::Tensor& weight, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
    int64_t dil_h, int64_t dil_w, int64_t groups, int64_t offset_groups, bool use_mask) {
  return backward(launch, grad, input, weight, offset, mask, bias,
                  Params{stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups,
                         use_mask});
}

}  // namespace pyseg::deform_conv
