// conv_transpose2d CPU kernels.
//
// Forward: the sub-pixel (phase) decomposition. Output row oh receives input row ih through
// tap kh iff oh + pad = ih * stride + kh * dilation, so the outputs with oh = ph (mod stride)
// (one "phase") read a fixed set of taps, each at a fixed row offset:
//     ih = jh + off(kh),  oh = ph + stride * jh,  off(kh) = (ph + pad - kh * dilation) / stride.
// Per phase the transposed conv is therefore an ordinary (stride 1) correlation: gather the
// phase's input taps into a column matrix, one GEMM, and write the result straight into the
// strided output. There is no col2im and no overlap between writers: every output element is
// written exactly once, so the result is deterministic and tasks (image, group, phase, row
// tile) run in parallel, batch 1 included.
//
// Backward: grad_input is an ordinary conv2d of grad_output with the same weight (im2col of
// grad_output + GEMM); grad_weight is the correlation of input with that same column matrix,
// accumulated in a fixed number of partial sums (independent of the thread count) and
// reduced in a fixed order, so it is deterministic too. grad_bias sums grad_output per channel.
//
// The GEMMs go through at::mm (BLAS); everything around them is here. Work is done in NCHW;
// channels_last tensors are converted on the way in and out. Half and BFloat16 are computed in
// float32 and rounded once at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/conv_transpose/conv_transpose.h"

namespace pyseg::conv_transpose {
namespace {

// Elements of a column-matrix tile: large enough for efficient GEMMs, small enough to stay in
// the L2 cache together with the GEMM's output.
constexpr int64_t kTileElements = 1 << 16;
// Partial grad_weight sums per group (fixed, so the reduction order never depends on threads).
constexpr int64_t kWeightChunks = 16;

// The taps of one output phase along one axis.
struct AxisPhase {
  std::vector<int64_t> k;    // kernel index of each tap
  std::vector<int64_t> off;  // input index = phase-local output index + off
  int64_t count = 0;         // outputs in this phase
};

std::vector<AxisPhase> axis_phases(int64_t stride, int64_t pad, int64_t dil, int64_t kernel,
                                   int64_t out) {
  std::vector<AxisPhase> phases(stride);
  for (int64_t ph = 0; ph < stride; ++ph) {
    AxisPhase& a = phases[ph];
    a.count = ph < out ? (out - ph + stride - 1) / stride : 0;
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t t = ph + pad - k * dil;
      // Floor modulo: t may be negative.
      if (((t % stride) + stride) % stride != 0) continue;
      a.k.push_back(k);
      a.off.push_back(t >= 0 ? t / stride : -((-t) / stride));
    }
  }
  return phases;
}

template <typename scalar_t>
at::Tensor matrix(scalar_t* data, int64_t rows, int64_t cols, int64_t row_stride,
                  const at::TensorOptions& opts) {
  return at::from_blob(data, {rows, cols}, {row_stride, 1}, opts);
}

template <typename scalar_t>
void forward_nchw(const Params& p, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias, at::Tensor& y) {
  const auto hp = axis_phases(p.stride_h, p.pad_h, p.dil_h, p.kernel_h, p.out_h);
  const auto wp = axis_phases(p.stride_w, p.pad_w, p.dil_w, p.kernel_w, p.out_w);
  const int64_t G = p.groups, Cin = p.in_channels, Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kHW = p.kernel_h * p.kernel_w;
  const bool direct = p.stride_h == 1 && p.stride_w == 1;  // one phase: GEMM writes into y
  const auto opts = x.options();
  const scalar_t* xd = x.const_data_ptr<scalar_t>();
  const scalar_t* wd = weight.const_data_ptr<scalar_t>();
  const scalar_t* bd = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* yd = y.data_ptr<scalar_t>();

  // Per phase: the weight matrix A[g] (Cog x K), K = Cig * taps, k = (ci, tap_h, tap_w),
  // and the row tiles of its outputs.
  struct Phase {
    int64_t ph, pw, taps_h, taps_w, K, rows_per_tile, tiles;
    std::vector<scalar_t> a;
  };
  struct Task {
    int64_t phase, row0;
  };
  std::vector<Phase> phases;
  std::vector<Task> tasks;  // per (image, group) the same list
  for (int64_t ph = 0; ph < p.stride_h; ++ph) {
    for (int64_t pw = 0; pw < p.stride_w; ++pw) {
      const AxisPhase &ah = hp[ph], &aw = wp[pw];
      if (ah.count == 0 || aw.count == 0) continue;
      Phase f{ph, pw, (int64_t)ah.k.size(), (int64_t)aw.k.size(), 0, 0, 0, {}};
      f.K = Cig * f.taps_h * f.taps_w;
      f.rows_per_tile = std::clamp<int64_t>(
          kTileElements / std::max<int64_t>(1, std::max(f.K, Cog) * aw.count), 1, ah.count);
      f.tiles = (ah.count + f.rows_per_tile - 1) / f.rows_per_tile;
      f.a.resize(G * Cog * f.K);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t co = 0; co < Cog; ++co)
          for (int64_t ci = 0; ci < Cig; ++ci)
            for (int64_t th = 0; th < f.taps_h; ++th)
              for (int64_t tw = 0; tw < f.taps_w; ++tw)
                f.a[(g * Cog + co) * f.K + (ci * f.taps_h + th) * f.taps_w + tw] =
                    wd[((g * Cig + ci) * Cog + co) * kHW + ah.k[th] * p.kernel_w + aw.k[tw]];
      const int64_t index = phases.size();
      for (int64_t t = 0; t < f.tiles; ++t) tasks.push_back({index, t * f.rows_per_tile});
      phases.push_back(std::move(f));
    }
  }
  // Phases that no tap reaches (e.g. kernel 1, stride 2) hold only the bias.
  bool tapless = false;
  for (const Phase& f : phases) tapless = tapless || f.K == 0;
  if (tapless) {
    at::parallel_for(0, p.batch * p.out_channels, 1, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        const scalar_t v = bd ? bd[plane % p.out_channels] : scalar_t(0);
        std::fill(yd + plane * Ho * Wo, yd + (plane + 1) * Ho * Wo, v);
      }
    });
  }
  const int64_t per_image_group = tasks.size();
  const int64_t total = p.batch * G * per_image_group;
  at::parallel_for(0, total, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> col, out;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (G * per_image_group);
      const int64_t g = (task / per_image_group) % G;
      const Task& tk = tasks[task % per_image_group];
      const Phase& f = phases[tk.phase];
      const AxisPhase &ah = hp[f.ph], &aw = wp[f.pw];
      const int64_t rows = std::min(f.rows_per_tile, ah.count - tk.row0);
      const int64_t Jw = aw.count, Jt = rows * Jw;
      scalar_t* yplane0 = yd + (n * p.out_channels + g * Cog) * Ho * Wo;
      if (f.K == 0) continue;  // handled by the fill above
      col.resize(f.K * Jt);
      // Gather: row k = (ci, th, tw) of the column matrix holds, for each phase-local output
      // (r, jw), the input x[ci, row0 + r + off_h, jw + off_w] (0 outside the input).
      for (int64_t ci = 0; ci < Cig; ++ci) {
        const scalar_t* xplane = xd + (n * Cin + g * Cig + ci) * H * W;
        for (int64_t th = 0; th < f.taps_h; ++th) {
          for (int64_t tw = 0; tw < f.taps_w; ++tw) {
            scalar_t* dst = col.data() + ((ci * f.taps_h + th) * f.taps_w + tw) * Jt;
            const int64_t offw = aw.off[tw];
            const int64_t lo = std::clamp<int64_t>(-offw, 0, Jw);
            const int64_t hi = std::clamp<int64_t>(W - offw, lo, Jw);
            for (int64_t r = 0; r < rows; ++r) {
              scalar_t* d = dst + r * Jw;
              const int64_t ih = tk.row0 + r + ah.off[th];
              if (ih < 0 || ih >= H) {
                std::fill(d, d + Jw, scalar_t(0));
                continue;
              }
              std::fill(d, d + lo, scalar_t(0));
              std::memcpy(d + lo, xplane + ih * W + lo + offw, (hi - lo) * sizeof(scalar_t));
              std::fill(d + hi, d + Jw, scalar_t(0));
            }
          }
        }
      }
      const at::Tensor A = matrix(const_cast<scalar_t*>(f.a.data()) + g * Cog * f.K, Cog, f.K,
                                  f.K, opts);
      const at::Tensor B = matrix(col.data(), f.K, Jt, Jt, opts);
      if (direct) {
        // Stride 1: the phase is the whole output and a tile is whole output rows.
        at::Tensor C = matrix(yplane0 + tk.row0 * Wo, Cog, Jt, Ho * Wo, opts);
        at::mm_out(C, A, B);
        if (bd) {
          for (int64_t co = 0; co < Cog; ++co) {
            scalar_t* d = yplane0 + co * Ho * Wo + tk.row0 * Wo;
            const scalar_t b = bd[g * Cog + co];
            for (int64_t j = 0; j < Jt; ++j) d[j] += b;
          }
        }
        continue;
      }
      out.resize(Cog * Jt);
      at::Tensor C = matrix(out.data(), Cog, Jt, Jt, opts);
      at::mm_out(C, A, B);
      // Scatter the phase's outputs into their strided places.
      for (int64_t co = 0; co < Cog; ++co) {
        const scalar_t b = bd ? bd[g * Cog + co] : scalar_t(0);
        const scalar_t* src = out.data() + co * Jt;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t oh = f.ph + p.stride_h * (tk.row0 + r);
          scalar_t* d = yplane0 + co * Ho * Wo + oh * Wo + f.pw;
          const scalar_t* s = src + r * Jw;
          if (p.stride_w == 2) {
            for (int64_t jw = 0; jw < Jw; ++jw) d[2 * jw] = s[jw] + b;
          } else {
            for (int64_t jw = 0; jw < Jw; ++jw) d[jw * p.stride_w] = s[jw] + b;
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void backward_nchw(const Params& p, const at::Tensor& gy, const at::Tensor& x,
                   const at::Tensor& weight, at::Tensor& gx, at::Tensor& gw) {
  const int64_t G = p.groups, Cin = p.in_channels, Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kH = p.kernel_h, kW = p.kernel_w, K = Cog * kH * kW;
  const auto opts = gy.options();
  const bool need_gx = gx.defined(), need_gw = gw.defined();
  const scalar_t* gyd = gy.const_data_ptr<scalar_t>();
  const scalar_t* xd = need_gw ? x.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* wd = weight.const_data_ptr<scalar_t>();

  // For tap kw, the input columns iw whose output column ow = iw*s - pad + kw*d is in range.
  std::vector<int64_t> lo_w(kW), hi_w(kW);
  for (int64_t kw = 0; kw < kW; ++kw) {
    const int64_t base = kw * p.dil_w - p.pad_w;  // ow = iw * s + base
    int64_t lo = base >= 0 ? 0 : (-base + p.stride_w - 1) / p.stride_w;
    const int64_t lim = Wo - 1 - base;  // iw * s <= lim
    int64_t hi = lim < 0 ? 0 : lim / p.stride_w + 1;
    hi = std::min(hi, W);
    lo = std::min(lo, hi);
    lo_w[kw] = lo;
    hi_w[kw] = hi;
  }
  const int64_t rows_per_tile =
      std::clamp<int64_t>(kTileElements / std::max<int64_t>(1, std::max(K, Cig) * W), 1, H);
  const int64_t tiles = (H + rows_per_tile - 1) / rows_per_tile;
  const int64_t per_group = p.batch * tiles;
  const int64_t chunks = need_gw ? std::min(per_group, kWeightChunks) : per_group;
  at::Tensor partial;
  if (need_gw) partial = at::zeros({G * chunks, Cig, K}, opts);

  at::parallel_for(0, G * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> col;
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t g = unit / chunks, c = unit % chunks;
      const int64_t t0 = c * per_group / chunks, t1 = (c + 1) * per_group / chunks;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / tiles, row0 = (t % tiles) * rows_per_tile;
        const int64_t rows = std::min(rows_per_tile, H - row0), Jt = rows * W;
        col.resize(K * Jt);
        // im2col of grad_output as seen by a conv2d(stride, padding, dilation): row
        // k = (co, kh, kw), column (r, iw) holds gy[co, ih*s - pad + kh*d, iw*s - pad + kw*d].
        for (int64_t co = 0; co < Cog; ++co) {
          const scalar_t* gplane = gyd + (n * p.out_channels + g * Cog + co) * Ho * Wo;
          for (int64_t kh = 0; kh < kH; ++kh) {
            for (int64_t kw = 0; kw < kW; ++kw) {
              scalar_t* dst = col.data() + ((co * kH + kh) * kW + kw) * Jt;
              const int64_t lo = lo_w[kw], hi = hi_w[kw];
              const int64_t base_w = kw * p.dil_w - p.pad_w;
              for (int64_t r = 0; r < rows; ++r) {
                scalar_t* d = dst + r * W;
                const int64_t oh = (row0 + r) * p.stride_h - p.pad_h + kh * p.dil_h;
                if (oh < 0 || oh >= Ho) {
                  std::fill(d, d + W, scalar_t(0));
                  continue;
                }
                std::fill(d, d + lo, scalar_t(0));
                const scalar_t* s = gplane + oh * Wo + base_w;
                if (p.stride_w == 1) {
                  std::memcpy(d + lo, s + lo, (hi - lo) * sizeof(scalar_t));
                } else {
                  for (int64_t iw = lo; iw < hi; ++iw) d[iw] = s[iw * p.stride_w];
                }
                std::fill(d + hi, d + W, scalar_t(0));
              }
            }
          }
        }
        const at::Tensor B = matrix(col.data(), K, Jt, Jt, opts);
        if (need_gx) {
          scalar_t* gxd = gx.data_ptr<scalar_t>() + ((n * Cin + g * Cig) * H + row0) * W;
          at::Tensor C = matrix(gxd, Cig, Jt, H * W, opts);
          at::mm_out(C, matrix(const_cast<scalar_t*>(wd) + g * Cig * K, Cig, K, K, opts), B);
        }
        if (need_gw) {
          const scalar_t* xg = xd + ((n * Cin + g * Cig) * H + row0) * W;
          at::Tensor acc = partial[unit];
          acc.addmm_(matrix(const_cast<scalar_t*>(xg), Cig, Jt, H * W, opts), B.t());
        }
      }
    }
  });
  if (need_gw) {
    // Fixed-order reduction of the partial sums.
    const scalar_t* pd = partial.const_data_ptr<scalar_t>();
    scalar_t* gwd = gw.data_ptr<scalar_t>();
    const int64_t per = Cig * K;
    at::parallel_for(0, G * per, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t g = i / per, j = i % per;
        scalar_t s = pd[(g * chunks) * per + j];
        for (int64_t c = 1; c < chunks; ++c) s += pd[(g * chunks + c) * per + j];
        gwd[i] = s;
      }
    });
  }
}

template <typename scalar_t>
void bias_grad(const Params& p, const at::Tensor& gy, at::Tensor& gb) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = p.out_h * p.out_w, C = p.out_channels;
  const scalar_t* g = gy.const_data_ptr<scalar_t>();
  scalar_t* out = gb.data_ptr<scalar_t>();
  at::parallel_for(0, C, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      acc_t total = 0;
      for (int64_t n = 0; n < p.batch; ++n) {
        const scalar_t* s = g + (n * C + c) * plane;
        acc_t part = 0;
        for (int64_t i = 0; i < plane; ++i) part += s[i];
        total += part;
      }
      out[c] = static_cast<scalar_t>(total);
    }
  });
}

// Half / BFloat16 run in float32 (BLAS has no accurate half GEMM with float accumulation
// reachable from here); one rounding at the end.
at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

at::Tensor conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef output_padding,
                                int64_t groups, at::IntArrayRef dilation) {
  const Params p =
      check_forward(input, weight, bias, stride, padding, output_padding, groups, dilation);
  const auto dtype = input.scalar_type(), ctype = compute_type(dtype);
  at::Tensor x = as_nchw(input).to(ctype);
  at::Tensor w = weight.contiguous().to(ctype);
  at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous().to(ctype) : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out_h, p.out_w}, x.options());
  if (y.numel() > 0) {
    if (x.numel() == 0 || w.numel() == 0) {
      y.zero_();
      if (b.defined()) y.add_(b.view({1, -1, 1, 1}));
    } else {
      AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d", [&] {
        forward_nchw<scalar_t>(p, x, w, b, y);
      });
    }
  }
  return finish(y.to(dtype), p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  const Params p = check_backward(grad_output, input, weight, stride, padding, output_padding,
                                  groups, dilation);
  const auto dtype = input.scalar_type(), ctype = compute_type(dtype);
  at::Tensor gy = as_nchw(grad_output).to(ctype);
  at::Tensor x = as_nchw(input).to(ctype);
  at::Tensor w = weight.contiguous().to(ctype);
  at::Tensor gx, gw, gb;
  if (output_mask[0]) gx = at::zeros({p.batch, p.in_channels, p.in_h, p.in_w}, x.options());
  if (output_mask[1]) gw = at::zeros(p.weight_sizes(), x.options());
  if (output_mask[2]) gb = at::zeros({p.out_channels}, x.options());
  const bool work = gy.numel() > 0 && x.numel() > 0 && w.numel() > 0;
  if (work && (gx.defined() || gw.defined())) {
    AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d_backward", [&] {
      backward_nchw<scalar_t>(p, gy, x, w, gx, gw);
    });
  }
  if (gb.defined() && gy.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d_backward_bias", [&] {
      bias_grad<scalar_t>(p, gy, gb);
    });
  }
  const auto opts = input.options();
  return {gx.defined() ? finish(gx.to(dtype), p) : at::empty({0}, opts),
          gw.defined() ? gw.to(dtype) : at::empty({0}, opts),
          gb.defined() ? gb.to(dtype) : at::empty({0}, opts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cpu);
  m.impl("conv_transpose2d_backward", &conv_transpose2d_backward_cpu);
}

}  // namespace pyseg::conv_transpose
