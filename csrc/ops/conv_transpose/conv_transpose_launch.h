// conv_transpose2d host code for the CUDA kernels, written once against a Launcher (real CUDA
// in conv_transpose_cuda.cu, the CPU emulator in conv_transpose_emu.cpp). Kernels work in
// NCHW; channels_last tensors are converted on the way in and out.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <numeric>

#include "common/launch_utils.h"
#include "ops/conv_transpose/conv_transpose.h"
#include "ops/conv_transpose/conv_transpose_kernels.cuh"

namespace pyseg::conv_transpose {

inline Geometry geometry(const Params& p) {
  Geometry g{p.batch,     p.in_channels, p.in_h,         p.in_w,        p.out_channels,
             p.out_h,     p.out_w,       p.groups,       p.in_per_group, p.out_per_group,
             p.kernel_h,  p.kernel_w,    p.stride_h,     p.stride_w,    p.pad_h,
             p.pad_w,     p.dil_h,       p.dil_w,        1,             1};
  g.step_h = p.stride_h / std::gcd(p.stride_h, p.dil_h);
  g.step_w = p.stride_w / std::gcd(p.stride_w, p.dil_w);
  return g;
}

template <typename scalar_t, class Launcher, class Problem>
void run_gemm(const Launcher& launch, const Problem& prob, int64_t problems, int64_t max_m,
              int64_t max_n) {
  const int64_t tiles_m = (max_m + kTileM - 1) / kTileM, tiles_n = (max_n + kTileN - 1) / kTileN;
  const int64_t tiles = problems * tiles_m * tiles_n;
  if (tiles == 0) return;
  const dim3 grid = grid_for(launch, tiles * kGemmThreads, kGemmThreads), block(kGemmThreads);
  launch(implicit_gemm_kernel<scalar_t, Problem>, grid, block, 0, prob, problems, tiles_m, tiles_n);
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                   at::IntArrayRef dilation) {
  const Params p =
      check_forward(input, weight, bias, stride, padding, output_padding, groups, dilation);
  at::Tensor x = as_nchw(input), w = weight.contiguous();
  at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out_h, p.out_w}, x.options());
  if (y.numel() == 0) return finish(y, p);
  const Geometry g = geometry(p);
  // The largest phase: ceil(out / stride) per side.
  const int64_t max_n = ((p.out_h + p.stride_h - 1) / p.stride_h) *
                        ((p.out_w + p.stride_w - 1) / p.stride_w);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "conv_transpose2d", [&] {
    ForwardProblem<scalar_t> prob{x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                  b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                                  y.data_ptr<scalar_t>(), g};
    run_gemm<scalar_t>(launch, prob, p.batch * p.groups * p.stride_h * p.stride_w,
                       p.out_per_group, max_n);
  });
  return finish(y, p);
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Launcher& launch, const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation,
    std::array<bool, 3> output_mask) {
  const Params p = check_backward(grad_output, input, weight, stride, padding, output_padding,
                                  groups, dilation);
  at::Tensor gy = as_nchw(grad_output), x = as_nchw(input), w = weight.contiguous();
  const auto opts = x.options();
  at::Tensor gx = at::empty({0}, opts), gw = at::empty({0}, opts), gb = at::empty({0}, opts);
  const Geometry g = geometry(p);
  const int64_t khw = p.kernel_h * p.kernel_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "conv_transpose2d_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (output_mask[0]) {
      gx = at::empty({p.batch, p.in_channels, p.in_h, p.in_w}, opts);
      GradInputProblem<scalar_t> prob{gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                      gx.data_ptr<scalar_t>(), g};
      run_gemm<scalar_t>(launch, prob, p.batch * p.groups, p.in_per_group, p.in_h * p.in_w);
      gx = finish(gx, p);
    }
    if (output_mask[1]) {
      gw = at::empty(p.weight_sizes(), opts);
      const int64_t K = p.batch * p.in_h * p.in_w, cols = p.out_per_group * khw;
      // Enough slices to fill the device, each long enough to amortize its tile loads; the
      // count depends only on the shapes, so the summation order is fixed.
      const int64_t tiles = p.groups * ((p.in_per_group + kTileM - 1) / kTileM) *
                            ((cols + kTileN - 1) / kTileN);
      int64_t slices = std::clamp<int64_t>(512 / std::max<int64_t>(1, tiles), 1, 64);
      slices = std::max<int64_t>(1, std::min<int64_t>(slices, K / 256));
      const int64_t slice_len = (K + slices - 1) / slices;
      at::Tensor partial = at::zeros({slices, p.in_channels, cols},
                                     opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
      GradWeightProblem<scalar_t> prob{x.const_data_ptr<scalar_t>(), gy.const_data_ptr<scalar_t>(),
                                       partial.data_ptr<acc_t>(), g, slices, slice_len};
      run_gemm<scalar_t>(launch, prob, p.groups * slices, p.in_per_group, cols);
      const int64_t numel = gw.numel();
      if (numel > 0)
        launch(reduce_slices_kernel<scalar_t>, grid_for(launch, numel), dim3(kThreadsPerBlock), 0,
               partial.const_data_ptr<acc_t>(), gw.data_ptr<scalar_t>(), slices, numel);
    }
    if (output_mask[2]) {
      gb = at::zeros({p.out_channels}, opts);
      if (gy.numel() > 0) {
        const dim3 grid(static_cast<unsigned>(
            std::min<int64_t>(p.out_channels, launch.max_blocks())));
        launch(bias_grad_kernel<scalar_t>, grid, dim3(kGemmThreads), 0,
               gy.const_data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(), p.batch, p.out_channels,
               p.out_h * p.out_w);
      }
    }
  });
  // The kernels write grad_weight contiguous; its layout follows the shared rule.
  if (output_mask[1] && grad_weight_channels_last(p, weight))
    gw = gw.contiguous(at::MemoryFormat::ChannelsLast);
  return {gx, gw, gb};
}

}  // namespace pyseg::conv_transpose
