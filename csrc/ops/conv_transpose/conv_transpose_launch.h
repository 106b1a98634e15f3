// conv_transpose2d host code for the CUDA kernels, written once against a Launcher (real CUDA
// in conv_transpose_cuda.cu, the CPU emulator in conv_transpose_emu.cpp). Kernels work in
// NCHW; channels_last tensors are converted on the way in and out.
//
// Every pass is one GEMM of the common core (common/gemm_kernels.cuh) whose B operand is read
// in place as an implicit im2col (GemmConvOperand), so half / bfloat16 (and float when torch
// allows TF32) run on tensor cores, with 32-bit index arithmetic and no division in the k
// loop:
// - forward, per (group, phase): y_phase (C_out/g x phase pixels) = W_phase (C_out/g x
//   C_in/g * taps) x_taps, where W_phase holds the phase's taps (a strided copy of the
//   weight, or the weight itself for stride 1) and x_taps reads the input at the phase's
//   fixed per-tap offsets (zero outside);
// - grad_input, per group: gx = W_g (C_in/g x C_out/g * kH * kW) im2col(gy), conv2d's im2col;
// - grad_weight, per group: gw = X_g (C_in/g x N * H * W) im2col(gy)^T, split along K into
//   fixed slices added in order (gemm_sum_splits_kernel);
// - grad_bias: bias_grad_kernel.
// Sizes the 32-bit index arithmetic cannot hold (a GEMM dimension near 2^31) run the int64
// kernel implicit_gemm_kernel instead (the launcher may force it: the emulator's
// set_force_int64 tests it).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <cstdlib>
#include <numeric>
#include <type_traits>
#include <vector>

#include "common/gemm_launch.h"
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

inline GemmIndex dense(int64_t stride) { return gemm_dense_index(stride); }

// The taps of one output phase along one axis: output o = phase + stride * j reads the taps
// k = k0 + t * step (t < taps) at input j + in0 - t * in_step.
struct PhaseAxis {
  int64_t phase, k0, taps, count, in0, in_step;
};

inline PhaseAxis phase_axis(int64_t phase, int64_t stride, int64_t pad, int64_t dil,
                            int64_t kernel, int64_t out, int64_t step) {
  PhaseAxis a{phase, kernel, 0, 0, 0, 0};
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t t = phase + pad - k * dil;
    if (((t % stride) + stride) % stride == 0) {
      a.k0 = k;
      break;
    }
  }
  if (a.k0 < kernel) a.taps = (kernel - 1 - a.k0) / step + 1;
  a.count = phase < out ? (out - phase + stride - 1) / stride : 0;
  a.in0 = (phase + pad - a.k0 * dil) / stride;  // exact: the tap was chosen for it
  a.in_step = step * dil / stride;
  return a;
}

// Split-K slices for a long-K product (the weight gradient): enough blocks to fill the
// device, each slice at least 256 long; the count depends only on the shapes, so the
// summation order is fixed.
inline int64_t weight_splits(int64_t M, int64_t N, int64_t K) {
  const int64_t tiles = ((M + kGemmTileM - 1) / kGemmTileM) * ((N + kGemmTileN - 1) / kGemmTileN);
  const int64_t splits = std::clamp<int64_t>(256 / std::max<int64_t>(1, tiles), 1, 64);
  return std::max<int64_t>(1, std::min(splits, K / 256));
}

// The int64 path (implicit_gemm_kernel, SIMT) for sizes the 32-bit GEMM cannot hold.
template <typename scalar_t, class Launcher, class Problem>
void run_int64_gemm(const Launcher& launch, const Problem& prob, int64_t problems, int64_t max_m,
                    int64_t max_n) {
  const int64_t tiles_m = (max_m + kTileM - 1) / kTileM, tiles_n = (max_n + kTileN - 1) / kTileN;
  const int64_t tiles = problems * tiles_m * tiles_n;
  if (tiles == 0) return;
  const dim3 grid = grid_for(launch, tiles * kTileThreads, kTileThreads), block(kTileThreads);
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
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const int64_t ipg = p.in_per_group, opg = p.out_per_group;
  const int64_t khw = p.kernel_h * p.kernel_w;
  // B of one phase: x at the phase's per-tap offsets, k = (ci, tap_h, tap_w), n = (jh, jw).
  auto phase_input = [&](const PhaseAxis& ah, const PhaseAxis& aw, const auto* data) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(data)>>;
    const auto i32 = [](int64_t v) { return static_cast<int32_t>(v); };
    return GemmConvOperand<T>{
        data, p.in_channels * in_plane,
        {i32(ah.count), i32(aw.count), 0, 0, 1, 0, 1},
        {i32(std::max<int64_t>(ah.taps, 1)), i32(std::max<int64_t>(aw.taps, 1)), in_plane,
         i32(ah.in0), i32(-ah.in_step), i32(aw.in0), i32(-aw.in_step)},
        p.in_w, 1, i32(p.in_h), i32(p.in_w)};
  };
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "conv_transpose2d", [&] {
    using T = scalar_t;
    std::vector<std::array<PhaseAxis, 2>> phases;
    // 32-bit index arithmetic when every size allows (always short of 2^30 per plane axis).
    bool fits = !launch.force_int64() && p.in_h < (1 << 30) && p.in_w < (1 << 30) &&
                p.out_h < (1 << 30) && p.out_w < (1 << 30) && p.kernel_h * p.dil_h < (1 << 30) &&
                p.kernel_w * p.dil_w < (1 << 30);
    for (int64_t ph = 0; ph < p.stride_h && fits; ++ph) {
      for (int64_t pw = 0; pw < p.stride_w && fits; ++pw) {
        const PhaseAxis ah = phase_axis(ph, p.stride_h, p.pad_h, p.dil_h, p.kernel_h, p.out_h, g.step_h);
        const PhaseAxis aw = phase_axis(pw, p.stride_w, p.pad_w, p.dil_w, p.kernel_w, p.out_w, g.step_w);
        if (ah.count * aw.count == 0) continue;  // no output in this phase
        phases.push_back({ah, aw});
        const int64_t taps = ah.taps * aw.taps;
        fits = std::abs(ah.in0) < (1 << 30) && std::abs(aw.in0) < (1 << 30) &&
               gemm_conv_fits(p.batch, opg, ah.count * aw.count, ipg * taps,
                              GemmOperand<T>{nullptr, 0, dense(taps), GemmIndex{1, std::max<int64_t>(taps, 1), opg * taps}},
                              phase_input(ah, aw, x.const_data_ptr<T>()),
                              {dense(out_plane), GemmIndex{p.stride_w, aw.count, p.stride_h * p.out_w}});
      }
    }
    if (!fits) {
      const int64_t max_n = ((p.out_h + p.stride_h - 1) / p.stride_h) *
                            ((p.out_w + p.stride_w - 1) / p.stride_w);
      ForwardProblem<T> prob{x.const_data_ptr<T>(), w.const_data_ptr<T>(),
                             b.defined() ? b.const_data_ptr<T>() : nullptr, y.data_ptr<T>(), g};
      run_int64_gemm<T>(launch, prob, p.batch * p.groups * p.stride_h * p.stride_w, opg, max_n);
      return;
    }
    for (const auto& [ah, aw] : phases) {
      const int64_t taps = ah.taps * aw.taps, K = ipg * taps;
      // The phase's taps of the weight, (C_in, C_out/g, taps_h, taps_w): the weight itself
      // when the phase holds every tap in order (stride 1), else a strided copy.
      at::Tensor wp = w;
      if (taps > 0 && taps != khw)
        wp = w.slice(2, ah.k0, p.kernel_h, g.step_h).slice(3, aw.k0, p.kernel_w, g.step_w).contiguous();
      for (int64_t grp = 0; grp < p.groups; ++grp) {
        // A (C_out/g x K): row co, column k = (ci, tap) at ci * (C_out/g * taps) + co * taps + tap.
        const GemmOperand<T> a{wp.const_data_ptr<T>() + grp * ipg * opg * taps, 0, dense(taps),
                               GemmIndex{1, std::max<int64_t>(taps, 1), opg * taps}};
        const GemmResult<T> c{y.data_ptr<T>() + grp * opg * out_plane + ah.phase * p.out_w + aw.phase,
                              p.out_channels * out_plane, dense(out_plane),
                              GemmIndex{p.stride_w, aw.count, p.stride_h * p.out_w},
                              b.defined() ? b.const_data_ptr<T>() + grp * opg : nullptr, 0, false};
        launch_gemm_conv(launch, a, phase_input(ah, aw, x.const_data_ptr<T>() + grp * ipg * in_plane),
                         c, p.batch, opg, ah.count * aw.count, K);
      }
    }
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
  const int64_t khw = p.kernel_h * p.kernel_w, in_plane = p.in_h * p.in_w;
  const int64_t out_plane = p.out_h * p.out_w, ipg = p.in_per_group, opg = p.out_per_group;
  const auto i32 = [](int64_t v) { return static_cast<int32_t>(v); };
  // conv2d's im2col of grad_output: the (co, kh, kw) axis and the input-pixel axis.
  const GemmConvAxis taps_axis{i32(p.kernel_h), i32(p.kernel_w), out_plane,
                               i32(-p.pad_h), i32(p.dil_h), i32(-p.pad_w), i32(p.dil_w)};
  const GemmConvAxis pixel_axis{i32(p.in_h), i32(p.in_w), p.out_channels * out_plane, 0,
                                i32(p.stride_h), 0, i32(p.stride_w)};
  const bool small = !launch.force_int64() && p.in_h < (1 << 30) && p.in_w < (1 << 30) &&
                     p.out_h < (1 << 30) && p.out_w < (1 << 30) &&
                     p.kernel_h * p.dil_h < (1 << 30) && p.kernel_w * p.dil_w < (1 << 30) &&
                     p.in_h * p.stride_h < (1 << 30) && p.in_w * p.stride_w < (1 << 30) &&
                     p.pad_h < (1 << 30) && p.pad_w < (1 << 30);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "conv_transpose2d_backward", [&] {
    using T = scalar_t;
    using acc_t = at::opmath_type<T>;
    auto im2col = [&](const T* data, int64_t batch_stride, const GemmConvAxis& fixed,
                      const GemmConvAxis& depth) {
      return GemmConvOperand<T>{data, batch_stride, fixed, depth, p.out_w, 1, i32(p.out_h),
                                i32(p.out_w)};
    };
    if (output_mask[0]) {
      gx = at::empty({p.batch, p.in_channels, p.in_h, p.in_w}, opts);
      // Per group: gx_g (C_in/g x H*W) = W_g (C_in/g x C_out/g * kH * kW) im2col(gy_g).
      const int64_t K = opg * khw;
      const GemmConvAxis pixels{i32(p.in_h), i32(p.in_w), 0, 0, i32(p.stride_h), 0,
                                i32(p.stride_w)};
      const GemmOperand<T> a0{w.const_data_ptr<T>(), 0, dense(K), dense(1)};
      const GemmConvOperand<T> b0 = im2col(gy.const_data_ptr<T>(), p.out_channels * out_plane,
                                           pixels, taps_axis);
      if (small && gemm_conv_fits(p.batch, ipg, in_plane, K, a0, b0, {dense(in_plane), dense(1)})) {
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          GemmOperand<T> a = a0;
          GemmConvOperand<T> b = b0;
          a.data += grp * ipg * K;
          b.data += grp * opg * out_plane;
          const GemmResult<T> c{gx.data_ptr<T>() + grp * ipg * in_plane, p.in_channels * in_plane,
                                dense(in_plane), dense(1), nullptr, 0, false};
          launch_gemm_conv(launch, a, b, c, p.batch, ipg, in_plane, K);
        }
      } else {
        GradInputProblem<T> prob{gy.const_data_ptr<T>(), w.const_data_ptr<T>(), gx.data_ptr<T>(), g};
        run_int64_gemm<T>(launch, prob, p.batch * p.groups, ipg, in_plane);
      }
      gx = finish(gx, p);
    }
    if (output_mask[1]) {
      gw = at::empty(p.weight_sizes(), opts);
      // Per group: gw_g (C_in/g x C_out/g * kH * kW) = X_g (C_in/g x N * H * W) im2col(gy_g)^T.
      const int64_t K = p.batch * in_plane, cols = opg * khw;
      const GemmOperand<T> a0{x.const_data_ptr<T>(), 0, dense(in_plane),
                              GemmIndex{1, std::max<int64_t>(in_plane, 1), p.in_channels * in_plane}};
      const GemmConvOperand<T> b0 = im2col(gy.const_data_ptr<T>(), 0, taps_axis, pixel_axis);
      int64_t splits = weight_splits(ipg, cols, K);
      int64_t split_len = (K + splits - 1) / splits;
      split_len = (split_len + kGemmTileK - 1) / kGemmTileK * kGemmTileK;
      splits = std::max<int64_t>(1, (K + split_len - 1) / split_len);  // no empty split
      if (K == 0) {
        gw.zero_();
      } else if (small && gemm_conv_fits(p.groups * splits, ipg, cols, K, a0, b0,
                                         {dense(cols), dense(1)})) {
        const int64_t numel = gw.numel();
        at::Tensor partial;
        if (splits > 1)
          partial = at::empty({splits, numel}, opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          GemmOperand<T> a = a0;
          GemmConvOperand<T> b = b0;
          a.data += grp * ipg * in_plane;
          b.data += grp * opg * out_plane;
          const int64_t at_ = grp * ipg * cols;
          if (splits == 1) {
            const GemmResult<T> c{gw.data_ptr<T>() + at_, 0, dense(cols), dense(1), nullptr, 0, false};
            launch_gemm_conv(launch, a, b, c, 1, ipg, cols, K);
          } else {
            const GemmResult<acc_t> c{partial.data_ptr<acc_t>() + at_, 0, dense(cols), dense(1),
                                      nullptr, 0, false, splits, split_len, numel};
            launch_gemm_conv(launch, a, b, c, 1, ipg, cols, K);
          }
        }
        if (splits > 1)
          launch(gemm_sum_splits_kernel<T, acc_t>, grid_for(launch, numel), dim3(kThreadsPerBlock),
                 0, partial.const_data_ptr<acc_t>(), gw.data_ptr<T>(), splits, numel, false);
      } else {
        // int64 path: fixed K slices summed in order by reduce_slices_kernel.
        const int64_t tiles = p.groups * ((ipg + kTileM - 1) / kTileM) * ((cols + kTileN - 1) / kTileN);
        int64_t slices = std::clamp<int64_t>(512 / std::max<int64_t>(1, tiles), 1, 64);
        slices = std::max<int64_t>(1, std::min<int64_t>(slices, K / 256));
        const int64_t slice_len = (K + slices - 1) / slices;
        at::Tensor partial = at::zeros({slices, p.in_channels, cols},
                                       opts.dtype(c10::CppTypeToScalarType<acc_t>::value));
        GradWeightProblem<T> prob{x.const_data_ptr<T>(), gy.const_data_ptr<T>(),
                                  partial.data_ptr<acc_t>(), g, slices, slice_len};
        run_int64_gemm<T>(launch, prob, p.groups * slices, ipg, cols);
        const int64_t numel = gw.numel();
        if (numel > 0)
          launch(reduce_slices_kernel<T>, grid_for(launch, numel), dim3(kThreadsPerBlock), 0,
                 partial.const_data_ptr<acc_t>(), gw.data_ptr<T>(), slices, numel);
      }
    }
    if (output_mask[2]) {
      gb = at::zeros({p.out_channels}, opts);
      if (gy.numel() > 0) {
        const dim3 grid(static_cast<unsigned>(
            std::min<int64_t>(p.out_channels, launch.max_blocks())));
        launch(bias_grad_kernel<T>, grid, dim3(kTileThreads), 0, gy.const_data_ptr<T>(),
               gb.data_ptr<T>(), p.batch, p.out_channels, out_plane);
      }
    }
  });
  // The kernels write grad_weight contiguous; its layout follows the shared rule.
  if (output_mask[1] && grad_weight_channels_last(p, weight))
    gw = gw.contiguous(at::MemoryFormat::ChannelsLast);
  return {gx, gw, gb};
}

}  // namespace pyseg::conv_transpose
