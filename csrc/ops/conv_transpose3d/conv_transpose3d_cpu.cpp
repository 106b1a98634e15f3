// conv_transpose3d CPU kernels: per image and group, one GEMM into columns (pyseg's CPU GEMM,
// csrc/common/gemm.h) and a col2vol gather (conv_transpose3d_index.h); the backward is the
// adjoint: vol2col of grad_output, then one GEMM for grad_input and one accumulating GEMM
// for grad_weight. Every sum runs in a fixed order, so results do not depend on the thread
// count. Half and bfloat16 are computed in float32 (conv_transpose3d.h, as_compute).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "common/gemm.h"
#include "ops/conv_transpose3d/conv_transpose3d.h"

namespace pyseg::conv_transpose3d {
namespace {

using cpu::MatrixView;

template <typename T>
void forward_kernel(const T* x, const T* w, const T* b, T* y, const Params& p) {
  const Geometry g = p.geometry();
  const int64_t in_vol = p.in_volume(), out_vol = p.out_volume(), kvol = p.kernel_volume();
  const int64_t ipg = p.in_per_group, opg = p.out_per_group, rows = opg * kvol;
  std::vector<T> cols(rows * in_vol);
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      const T* wg = w + grp * ipg * rows;
      const T* xg = x + (n * p.in_channels + grp * ipg) * in_vol;
      // cols = W_g^T X_g: A(row, ci) = w[ci, row]
      cpu::gemm<T>(MatrixView<T>(wg, rows, ipg, 1, rows), MatrixView<T>(xg, ipg, in_vol, in_vol),
                   cols.data(), in_vol);
      T* yg = y + (n * p.out_channels + grp * opg) * out_vol;
      const int64_t lines = opg * p.out[0] * p.out[1];
      at::parallel_for(0, lines, 16, [&](int64_t begin, int64_t end) {
        for (int64_t line = begin; line < end; ++line) {
          const int64_t oh = line % p.out[1], od = (line / p.out[1]) % p.out[0];
          const int64_t co = line / (p.out[1] * p.out[0]);
          const T bias = b != nullptr ? b[grp * opg + co] : T(0);
          T* out = yg + line * p.out[2];
          for (int64_t ow = 0; ow < p.out[2]; ++ow)
            out[ow] = bias + col2vol_sum<T>(cols.data(), g, co, od, oh, ow);
        }
      });
    }
  }
}

template <typename T>
void vol2col(const T* volume, T* cols, const Geometry& g, int64_t rows, int64_t in_vol) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row)
      for (int64_t i = 0; i < in_vol; ++i) cols[row * in_vol + i] = vol2col_value(volume, g, row, i);
  });
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                       at::IntArrayRef dilation) {
  const Params p = check_forward(input, weight, bias, stride, padding, output_padding, groups,
                                 dilation);
  const at::Tensor x = as_compute(input, p.batched), w = weight_as_compute(weight);
  const at::Tensor b = bias.has_value() && bias->defined() ? weight_as_compute(*bias) : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out[0], p.out[1], p.out[2]}, x.options());
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d", [&] {
      forward_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                               b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                               y.data_ptr<scalar_t>(), p);
    });
  }
  return finish(y, p, input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  const Params p = check_backward(grad_output, input, weight, stride, padding, output_padding,
                                  groups, dilation);
  const at::Tensor gy = as_compute(grad_output, p.batched), x = as_compute(input, p.batched);
  const at::Tensor w = weight_as_compute(weight);
  const auto opts = x.options();
  at::Tensor gx = at::empty({0}, opts), gw = at::empty({0}, opts), gb = at::empty({0}, opts);
  if (output_mask[0]) gx = at::zeros(x.sizes(), opts);
  if (output_mask[1]) gw = at::zeros(w.sizes(), opts);
  if (output_mask[2]) gb = at::zeros({p.out_channels}, opts);
  const Geometry g = p.geometry();
  const int64_t in_vol = p.in_volume(), out_vol = p.out_volume();
  const int64_t ipg = p.in_per_group, opg = p.out_per_group, rows = opg * p.kernel_volume();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d_backward", [&] {
    using T = scalar_t;
    const T* gyp = gy.const_data_ptr<T>();
    if (output_mask[0] || output_mask[1]) {
      std::vector<T> cols(rows * in_vol);
      for (int64_t n = 0; n < p.batch; ++n) {
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          vol2col(gyp + (n * p.out_channels + grp * opg) * out_vol, cols.data(), g, rows, in_vol);
          if (output_mask[0])  // grad_input_g = W_g cols
            cpu::gemm<T>(MatrixView<T>(w.const_data_ptr<T>() + grp * ipg * rows, ipg, rows, rows),
                         MatrixView<T>(cols.data(), rows, in_vol, in_vol),
                         gx.data_ptr<T>() + (n * p.in_channels + grp * ipg) * in_vol, in_vol);
          if (output_mask[1])  // grad_weight_g += X_g cols^T, images in order
            cpu::gemm<T>(MatrixView<T>(x.const_data_ptr<T>() + (n * p.in_channels + grp * ipg) * in_vol,
                                       ipg, in_vol, in_vol),
                         MatrixView<T>(cols.data(), in_vol, rows, 1, in_vol),
                         gw.data_ptr<T>() + grp * ipg * rows, rows, /*accumulate=*/n > 0);
        }
      }
    }
    if (output_mask[2]) {
      T* gbp = gb.data_ptr<T>();
      at::parallel_for(0, p.out_channels, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          double sum = 0;  // one channel's sum, in order
          for (int64_t n = 0; n < p.batch; ++n) {
            const T* plane = gyp + (n * p.out_channels + c) * out_vol;
            for (int64_t i = 0; i < out_vol; ++i) sum += static_cast<double>(plane[i]);
          }
          gbp[c] = static_cast<T>(sum);
        }
      });
    }
  });
  const auto type = input.scalar_type();
  if (output_mask[0]) gx = finish(gx, p, type);
  if (output_mask[1]) gw = finish(gw, p, type, /*activation=*/false);
  if (output_mask[2]) gb = finish(gb, p, type, /*activation=*/false);
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("conv_transpose3d", &forward_cpu);
  m.impl("conv_transpose3d_backward", &backward_cpu);
}

}  // namespace pyseg::conv_transpose3d
