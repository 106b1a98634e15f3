// conv_transpose3d host code for the CUDA kernels, written once against a Launcher (real
// CUDA in conv_transpose3d_cuda.cu, the CPU emulator in conv_transpose3d_emu.cpp). Per image:
// one batched GEMM over the groups (csrc/common/gemm_kernels.cuh) and a gather kernel.
// Kernels work on contiguous NCDHW in the compute type (float for half / bfloat16), with
// 32-bit index arithmetic when every size fits (index_bound), 64-bit otherwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include "common/gemm_launch.h"
#include "common/launch_utils.h"
#include "ops/conv_transpose3d/conv_transpose3d.h"
#include "ops/conv_transpose3d/conv_transpose3d_kernels.cuh"

namespace pyseg::conv_transpose3d {

inline GemmIndex dense(int64_t stride) { return gemm_dense_index(stride); }

// The largest magnitude an index expression of col2vol / vol2col reaches: offsets into one
// image's columns and output, and per axis the tap arithmetic (od = id * stride - pad +
// kd * dil, td = od + pad - kd * dil), within twice the padded extent out + 2 * pad, which
// check_forward keeps within int64. Call it only for a non-empty output.
inline int64_t index_bound(const Params& p) {
  int64_t bound = std::max(p.out_channels * p.kernel_volume() * p.in_volume(),
                           p.out_channels * p.out_volume());
  for (int d = 0; d < 3; ++d)
    bound = std::max(bound, 2 * std::min<int64_t>(p.out[d] + 2 * p.pad[d],
                                                  std::numeric_limits<int32_t>::max()));
  return bound;
}

// Calls fn.template operator()<index_t>() with int32_t when every index of a launch of
// `grid` fits (index_bound, and a grid-stride step past it), int64_t otherwise.
template <class Launcher, class Fn>
void with_index_type(const Launcher& launch, const Params& p, dim3 grid, const Fn& fn) {
  if (fits_int32(launch, grid, dim3(kThreadsPerBlock), index_bound(p)))
    fn.template operator()<int32_t>();
  else
    fn.template operator()<int64_t>();
}

template <class Launcher, typename scalar_t>
void gemm(const Launcher& launch, const GemmOperand<scalar_t>& a, const GemmOperand<scalar_t>& b,
          const GemmResult<scalar_t>& c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  launch_gemm(launch, "conv_transpose3d", a, b, c, batches, M, N, K);
}

template <class Launcher>
at::Tensor forward(const Launcher& launch, const at::Tensor& input, const at::Tensor& weight,
                   const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                   at::IntArrayRef dilation) {
  const Params p = check_forward(input, weight, bias, stride, padding, output_padding, groups,
                                 dilation);
  const at::Tensor x = as_compute(input, p.batched), w = weight_as_compute(weight);
  const at::Tensor b = bias.has_value() && bias->defined() ? weight_as_compute(*bias) : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out[0], p.out[1], p.out[2]}, x.options());
  if (y.numel() == 0) return finish(y, p, input.scalar_type());
  const int64_t in_vol = p.in_volume(), out_vol = p.out_volume();
  const int64_t ipg = p.in_per_group, rows = p.out_per_group * p.kernel_volume();
  at::Tensor cols = at::empty({p.groups, rows, in_vol}, x.options());
  const int64_t per_image = p.out_channels * out_vol;
  const dim3 grid = grid_for(launch, per_image);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d", [&] {
    using T = scalar_t;
    with_index_type(launch, p, grid, [&]<typename index_t>() {
      const Geometry<index_t> g = p.geometry<index_t>();
      for (int64_t n = 0; n < p.batch; ++n) {
        // cols_g (rows x in_vol) = W_g^T (rows x ipg) X_g (ipg x in_vol)
        const GemmOperand<T> a{w.const_data_ptr<T>(), ipg * rows, dense(1), dense(rows)};
        const GemmOperand<T> bx{x.const_data_ptr<T>() + n * p.in_channels * in_vol,
                                ipg * in_vol, dense(1), dense(in_vol)};
        const GemmResult<T> c{cols.data_ptr<T>(), rows * in_vol, dense(in_vol), dense(1),
                              nullptr, 0, false};
        gemm(launch, a, bx, c, p.groups, rows, in_vol, ipg);
        launch(col2vol_kernel<T, index_t>, grid, dim3(kThreadsPerBlock), 0,
               cols.const_data_ptr<T>(), b.defined() ? b.const_data_ptr<T>() : nullptr,
               y.data_ptr<T>() + n * per_image, g, static_cast<index_t>(rows * in_vol),
               static_cast<index_t>(per_image));
      }
    });
  });
  return finish(y, p, input.scalar_type());
}

template <class Launcher>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Launcher& launch, const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef output_padding, int64_t groups, at::IntArrayRef dilation,
    std::array<bool, 3> output_mask) {
  const Params p = check_backward(grad_output, input, weight, stride, padding, output_padding,
                                  groups, dilation);
  const at::Tensor gy = as_compute(grad_output, p.batched), x = as_compute(input, p.batched);
  const at::Tensor w = weight_as_compute(weight);
  const auto opts = x.options();
  at::Tensor gx = at::empty({0}, opts), gw = at::empty({0}, opts), gb = at::empty({0}, opts);
  if (output_mask[0]) gx = at::empty(x.sizes(), opts);
  if (output_mask[1]) gw = at::zeros(w.sizes(), opts);
  if (output_mask[2]) gb = at::zeros({p.out_channels}, opts);
  const int64_t in_vol = p.in_volume(), out_vol = p.out_volume();
  const int64_t ipg = p.in_per_group, rows = p.out_per_group * p.kernel_volume();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d_backward", [&] {
    using T = scalar_t;
    if ((output_mask[0] || output_mask[1]) && p.batch > 0) {
      at::Tensor cols = at::empty({p.groups, rows, in_vol}, opts);
      const int64_t cols_numel = cols.numel();
      const dim3 grid = grid_for(launch, cols_numel);
      for (int64_t n = 0; n < p.batch; ++n) {
        with_index_type(launch, p, grid, [&]<typename index_t>() {
          launch(vol2col_kernel<T, index_t>, grid, dim3(kThreadsPerBlock), 0,
                 gy.const_data_ptr<T>() + n * p.out_channels * out_vol, cols.data_ptr<T>(),
                 p.geometry<index_t>(), static_cast<index_t>(rows),
                 static_cast<index_t>(cols_numel));
        });
        const GemmOperand<T> cols_by_row{cols.const_data_ptr<T>(), rows * in_vol, dense(1),
                                         dense(in_vol)};   // B (rows x in_vol): f = i, k = row
        const GemmOperand<T> cols_by_col{cols.const_data_ptr<T>(), rows * in_vol, dense(in_vol),
                                         dense(1)};        // B (in_vol x rows): f = row, k = i
        if (output_mask[0]) {
          // grad_input_g (ipg x in_vol) = W_g (ipg x rows) cols_g
          const GemmOperand<T> a{w.const_data_ptr<T>(), ipg * rows, dense(rows), dense(1)};
          const GemmResult<T> c{gx.data_ptr<T>() + n * p.in_channels * in_vol, ipg * in_vol,
                                dense(in_vol), dense(1), nullptr, 0, false};
          gemm(launch, a, cols_by_row, c, p.groups, ipg, in_vol, rows);
        }
        if (output_mask[1]) {
          // grad_weight_g (ipg x rows) += X_g (ipg x in_vol) cols_g^T, images in order
          const GemmOperand<T> a{x.const_data_ptr<T>() + n * p.in_channels * in_vol, ipg * in_vol,
                                 dense(in_vol), dense(1)};
          const GemmResult<T> c{gw.data_ptr<T>(), ipg * rows, dense(rows), dense(1), nullptr, 0,
                                n > 0};
          gemm(launch, a, cols_by_col, c, p.groups, ipg, rows, in_vol);
        }
      }
    }
    if (output_mask[2] && p.batch > 0) {
      // grad_bias (C_out x 1) = grad_output (C_out x N * out_vol) times a column of ones
      // (one element read with stride 0).
      const at::Tensor one = at::ones({1}, opts);
      const GemmOperand<T> a{gy.const_data_ptr<T>(), 0, dense(out_vol),
                             GemmIndex{1, out_vol, p.out_channels * out_vol}};
      const GemmOperand<T> ones{one.const_data_ptr<T>(), 0, dense(0), dense(0)};
      const GemmResult<T> c{gb.data_ptr<T>(), 0, dense(1), dense(1), nullptr, 0, false};
      gemm(launch, a, ones, c, 1, p.out_channels, 1, p.batch * out_vol);
    }
  });
  const auto type = input.scalar_type();
  if (output_mask[0]) gx = finish(gx, p, type);
  if (output_mask[1]) gw = finish(gw, p, type, /*activation=*/false);
  if (output_mask[2]) gb = finish(gb, p, type, /*activation=*/false);
  return {gx, gw, gb};
}

}  // namespace pyseg::conv_transpose3d
