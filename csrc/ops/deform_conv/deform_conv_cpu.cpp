// deform_conv2d CPU kernels.
//
// The work is split into tasks of (image, tile of output pixels). A tile is sized so that its
// column matrix (tile pixels by C * kh * kw) stays in L2. For each tile and offset group the
// four corner positions and bilinear weights of every (tap, pixel) sample are computed once
// (a sampling table) and reused by every channel of the group. The image is read
// channels-last and the columns are stored pixel-major, (weight group, tap, channel) within a
// pixel's row, so each corner of a sample is a contiguous run of channels: the per-sample loops
// (deform_conv_cpu_kernel.cpp, one variant per CPU capability) move a vector of channels per
// load. The tile's columns are then multiplied, pixel-major, by the weight (reordered to (out
// channel, tap, channel), transposed and packed once per call) with pyseg's GEMM
// (common/gemm.h), and the tile's result is transposed into the NCHW output with the bias.
// Tasks run under at::parallel_for, so batch 1 and prime batch sizes use every thread, and no
// buffer larger than a tile is allocated per task.
//
// Backward runs the same tasks in kBackwardChunks contiguous chunks (a constant, not the
// thread count, so that the sums below round the same way on any machine). A chunk
// recomputes the tile's columns, forms the column gradient grad^T * W with the GEMM,
// accumulates its private weight gradient and, in one pass over the column gradient, scatters
// into the (channels-last) input gradient and gathers the offset and mask gradients (which
// the tile owns outright). The input gradient of an image that lies entirely inside one chunk
// is written in place; an image split between chunks gets one private buffer per chunk, and
// these (and the private weight gradients) are summed in chunk order afterwards:
// deterministic, no atomics.
//
// Sampling follows torchvision: a sample at (y, x) is zero if y <= -1, y >= H, x <= -1 or
// x >= W; otherwise corners outside the image count as zero. Corners that do not count are
// never read, so an Inf or NaN in the image reaches only the outputs that really sample it.
// The offset gradient uses torchvision's coordinate weights (the in-image corners, without
// the cut-off above).
// At integer positions the weights are exactly (1, 0, 0, 0), so zero offsets give exactly the
// columns of im2col and the result is F.conv2d's up to the GEMM's summation order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/gemm.h"
#include "ops/deform_conv/deform_conv.h"
#include "ops/deform_conv/deform_conv_cpu_kernel.h"

namespace pyseg::deform_conv {

cpu::CpuStub<FillColumnsFn<float>> fill_columns_f32_stub;
cpu::CpuStub<FillColumnsFn<double>> fill_columns_f64_stub;
cpu::CpuStub<SampleGradFn<float>> sample_grad_f32_stub;
cpu::CpuStub<SampleGradFn<double>> sample_grad_f64_stub;

namespace {

// Bytes one column tile may take (the backward pass holds two: columns and their gradient).
constexpr int64_t kColumnTileBytes = 512 * 1024;
constexpr int64_t kMinTilePixels = 256;

template <typename T>
inline void make_sample(Sample<T>& e, T y, T x, T m, int64_t H, int64_t W) {
  e.m = m;
  // Floor only coordinates near the image so the integer conversion is always defined
  // (NaN and huge offsets give a sample with no valid corner).
  const bool near_y = y > T(-2) && y < T(H + 1);
  const bool near_x = x > T(-2) && x < T(W + 1);
  const int64_t y0 = near_y ? static_cast<int64_t>(std::floor(y)) : -4;
  const int64_t x0 = near_x ? static_cast<int64_t>(std::floor(x)) : -4;
  const bool vy0 = y0 >= 0 && y0 < H, vy1 = y0 + 1 >= 0 && y0 + 1 < H;
  const bool vx0 = x0 >= 0 && x0 < W, vx1 = x0 + 1 >= 0 && x0 + 1 < W;
  const bool valid[4] = {vy0 && vx0, vy0 && vx1, vy1 && vx0, vy1 && vx1};
  const int64_t pos[4] = {y0 * W + x0, y0 * W + x0 + 1, (y0 + 1) * W + x0, (y0 + 1) * W + x0 + 1};
  e.ly = near_y ? y - T(y0) : T(0);
  e.lx = near_x ? x - T(x0) : T(0);
  const bool inside = y > T(-1) && y < T(H) && x > T(-1) && x < T(W);
  const T hy = T(1) - e.ly, hx = T(1) - e.lx;
  const T w[4] = {hy * hx, hy * e.lx, e.ly * hx, e.ly * e.lx};
  e.valid = 0;
  e.use = 0;
  for (int i = 0; i < 4; ++i) {
    e.valid |= static_cast<uint32_t>(valid[i]) << i;
    e.use |= static_cast<uint32_t>(inside && valid[i]) << i;
    e.w[i] = inside && valid[i] ? w[i] : T(0);
    // Corners outside the image are never read (their pixel 0 may hold an Inf or NaN that a
    // zero weight would turn into NaN); idx -1 marks them in the forward table.
    e.idx[i] = valid[i] ? static_cast<int32_t>(pos[i]) : -1;
  }
}

struct Geometry {
  Shape s;
  Params p;
};

// Fills table[k * ld + t] for taps k and pixels p0 + t, t < len, of offset group g of one image.
template <typename T>
void build_table(Sample<T>* table, int64_t ld, const T* off_n, const T* mask_n, int64_t g,
                 int64_t p0, int64_t len, const Geometry& geo) {
  const Shape& s = geo.s;
  const Params& p = geo.p;
  const int64_t K = s.taps(), P = s.out_plane();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t i = k / s.kernel_w, j = k % s.kernel_w;
    const T* dy = off_n + ((g * K + k) * 2) * P;
    const T* dx = dy + P;
    const T* mk = p.use_mask ? mask_n + (g * K + k) * P : nullptr;
    Sample<T>* row = table + k * ld;
    int64_t oy = p0 / s.out_w, ox = p0 % s.out_w;  // stepped, not divided, per pixel
    for (int64_t t = 0; t < len; ++t) {
      const int64_t q = p0 + t;
      const T y = static_cast<T>(oy * p.stride_h - p.pad_h + i * p.dil_h) + dy[q];
      const T x = static_cast<T>(ox * p.stride_w - p.pad_w + j * p.dil_w) + dx[q];
      make_sample(row[t], y, x, mk ? mk[q] : T(1), s.in_h, s.in_w);
      if (++ox == s.out_w) ox = 0, ++oy;
    }
  }
}

int64_t tile_pixels(const Shape& s, size_t elem) {
  const int64_t rows = std::max<int64_t>(1, s.channels * s.taps());
  int64_t t = kColumnTileBytes / (rows * static_cast<int64_t>(elem));
  // At least kMinTilePixels GEMM columns (narrower GEMMs waste the micro-kernel).
  t = std::max<int64_t>(kMinTilePixels, t / 32 * 32);
  return std::min(t, s.out_plane());
}

// The runs of channels of offset group g that also share a weight group (one run unless the
// two kinds of groups cut each other), for columns laid out (weight group, tap, channel) per
// pixel: the layout whose per-group blocks the GEMMs read.
std::vector<ChannelRun> channel_runs(const Shape& s, int64_t g) {
  const int64_t K = s.taps(), Cg = s.channels_per_group(), Cog = s.channels_per_offset_group();
  std::vector<ChannelRun> runs;
  for (int64_t c = g * Cog; c < (g + 1) * Cog;) {
    const int64_t wg = c / Cg, end = std::min((g + 1) * Cog, (wg + 1) * Cg);
    runs.push_back(ChannelRun{end - c, c, s.channels, wg * K * Cg + (c - wg * Cg), Cg});
    c = end;
  }
  return runs;
}

// The weight as (out channel, tap, channel): row o of group wg is that group's column layout.
at::Tensor weight_by_tap(const at::Tensor& w, const Shape& s) {
  return w.reshape({s.out_channels, s.channels_per_group(), s.taps()}).transpose(1, 2).contiguous();
}

template <typename T>
void forward_kernel(const at::Tensor& xh, const at::Tensor& weight, const at::Tensor& offset,
                    const at::Tensor& mask, const at::Tensor& bias, at::Tensor& out,
                    const Geometry& geo) {
  const Shape& s = geo.s;
  const int64_t K = s.taps(), P = s.out_plane(), KC = s.channels * K, O = s.out_channels;
  const int64_t G = s.groups, Og = s.out_channels_per_group(), KCg = s.channels_per_group() * K;
  const int64_t tile = tile_pixels(s, sizeof(T));
  const int64_t tiles = (P + tile - 1) / tile;
  const auto fill = fill_columns_stub<T>()();
  // Per group, W_g^T (KCg x Og) packed once: the tile's output is computed pixel-major,
  // columns (len x KCg, read in place) times W_g^T, and transposed into the NCHW output.
  // (The other way round, W_g times the columns, packs the columns transposed for every
  // tile: K times the data of the output's transpose.)
  const at::Tensor wt = weight_by_tap(weight, s);
  std::vector<cpu::PackedMatrix<T>> wt_packed;
  for (int64_t wg = 0; wg < G; ++wg)
    wt_packed.push_back(cpu::pack_b(
        cpu::MatrixView<T>(wt.const_data_ptr<T>() + wg * Og * KCg, Og, KCg, KCg).transposed()));
  std::vector<std::vector<ChannelRun>> runs;
  for (int64_t g = 0; g < s.offset_groups; ++g) runs.push_back(channel_runs(s, g));
  const T* xp = xh.const_data_ptr<T>();
  const T* op = offset.const_data_ptr<T>();
  const T* mp = geo.p.use_mask ? mask.const_data_ptr<T>() : nullptr;
  const T* bp = bias.const_data_ptr<T>();
  T* outp = out.data_ptr<T>();
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    T* cp = cpu::thread_scratch<T, 0>(tile * KC);  // tile pixels x (group, tap, channel)
    T* ot = cpu::thread_scratch<T, 1>(tile * O);   // tile pixels x out channels
    std::vector<Sample<T>> table(static_cast<size_t>(K * tile));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles, p0 = (task % tiles) * tile, len = std::min(tile, P - p0);
      const T* x_n = xp + n * s.channels * s.in_plane();
      const T* off_n = op + n * s.offset_groups * 2 * K * P;
      const T* mask_n = mp ? mp + n * s.offset_groups * K * P : nullptr;
      const SampleTable<T> tab{table.data(), tile, K, len};
      for (int64_t g = 0; g < s.offset_groups; ++g) {
        build_table(table.data(), tile, off_n, mask_n, g, p0, len, geo);
        for (const ChannelRun& run : runs[g]) fill(cp, KC, tab, x_n, run);
      }
      for (int64_t wg = 0; wg < G; ++wg)
        cpu::gemm<T>(cpu::MatrixView<T>(cp + wg * KCg, len, KCg, KC), wt_packed[wg], ot + wg * Og, O);
      T* o = outp + n * O * P + p0;
      for (int64_t oc = 0; oc < O; ++oc)
        for (int64_t t = 0; t < len; ++t) o[oc * P + t] = ot[t * O + oc] + bp[oc];
    }
  });
}

// Chunks of the backward's tasks, each with private sums reduced in a fixed order: enough for
// the threads of a usual CPU, few enough that the private weight gradients stay small.
constexpr int64_t kBackwardChunks = 8;

// grad_input_h: the input gradient, channels-last like xh (zeroed by the caller);
// grad_weight: (out channel, tap, channel) like weight_by_tap.
template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& xh, const at::Tensor& weight,
                     const at::Tensor& offset, const at::Tensor& mask, at::Tensor& grad_input_h,
                     at::Tensor& grad_weight, at::Tensor& grad_offset, at::Tensor& grad_mask,
                     const Geometry& geo) {
  const Shape& s = geo.s;
  const bool use_mask = geo.p.use_mask;
  const int64_t K = s.taps(), P = s.out_plane(), KC = s.channels * K, HW = s.in_plane();
  const int64_t G = s.groups, Og = s.out_channels_per_group(), KCg = s.channels_per_group() * K;
  const int64_t OG = s.offset_groups;
  const int64_t tile = tile_pixels(s, sizeof(T));
  const int64_t tiles = (P + tile - 1) / tile;
  const int64_t tasks = s.batch * tiles;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(tasks, kBackwardChunks));
  const auto fill = fill_columns_stub<T>()();
  const auto sample_grad = sample_grad_stub<T>()();
  // Per group, the weight (Og x KCg) packed once as the right operand of the column gradient.
  const at::Tensor wt = weight_by_tap(weight, s);
  std::vector<cpu::PackedMatrix<T>> w_packed;
  for (int64_t wg = 0; wg < G; ++wg)
    w_packed.push_back(cpu::pack_b(cpu::MatrixView<T>(wt.const_data_ptr<T>() + wg * Og * KCg, Og, KCg, KCg)));
  std::vector<std::vector<ChannelRun>> runs;
  for (int64_t g = 0; g < OG; ++g) runs.push_back(channel_runs(s, g));
  const T* gp = grad.const_data_ptr<T>();
  const T* xp = xh.const_data_ptr<T>();
  const T* op = offset.const_data_ptr<T>();
  const T* mp = use_mask ? mask.const_data_ptr<T>() : nullptr;
  T* gip = grad_input_h.data_ptr<T>();
  T* gop = grad_offset.data_ptr<T>();
  T* gmp = use_mask ? grad_mask.data_ptr<T>() : nullptr;
  const int64_t image = s.channels * HW;

  auto task_range = [&](int64_t j) {
    return std::pair<int64_t, int64_t>{tasks * j / chunks, tasks * (j + 1) / chunks};
  };
  // private[j]: chunk j's weight gradient and its buffers for images it shares with others.
  std::vector<at::Tensor> weight_parts(chunks);
  std::vector<std::vector<std::pair<int64_t, at::Tensor>>> image_parts(chunks);

  at::parallel_for(0, chunks, 1, [&](int64_t jb, int64_t je) {
    T* cp = cpu::thread_scratch<T, 0>(tile * KC);
    T* gcp = cpu::thread_scratch<T, 1>(tile * KC);
    std::vector<Sample<T>> table(static_cast<size_t>(OG * K * tile));
    std::vector<T> acc(static_cast<size_t>(3 * K * tile));
    for (int64_t j = jb; j < je; ++j) {
      const auto [t0, t1] = task_range(j);
      at::Tensor gw = at::zeros({s.out_channels, KCg}, xh.options());
      T* gwp = gw.data_ptr<T>();
      int64_t current_image = -1;
      T* gi_n = nullptr;
      for (int64_t task = t0; task < t1; ++task) {
        const int64_t n = task / tiles, p0 = (task % tiles) * tile, len = std::min(tile, P - p0);
        if (n != current_image) {
          current_image = n;
          const bool owned = n * tiles >= t0 && (n + 1) * tiles <= t1;
          if (owned) {
            gi_n = gip + n * image;
          } else {
            at::Tensor part = at::zeros({image}, xh.options());
            gi_n = part.data_ptr<T>();
            image_parts[j].emplace_back(n, std::move(part));
          }
        }
        const T* x_n = xp + n * image;
        const T* off_n = op + n * OG * 2 * K * P;
        const T* mask_n = mp ? mp + n * OG * K * P : nullptr;
        for (int64_t g = 0; g < OG; ++g) {
          Sample<T>* tab = table.data() + g * K * tile;
          build_table(tab, tile, off_n, mask_n, g, p0, len, geo);
          for (const ChannelRun& run : runs[g]) fill(cp, KC, SampleTable<T>{tab, tile, K, len}, x_n, run);
        }
        for (int64_t wg = 0; wg < G; ++wg) {
          const cpu::MatrixView<T> gout_g(gp + (n * s.out_channels + wg * Og) * P + p0, Og, len, P);
          const cpu::MatrixView<T> cols_g(cp + wg * KCg, len, KCg, KC);
          cpu::gemm<T>(gout_g.transposed(), w_packed[wg], gcp + wg * KCg, KC);
          cpu::gemm<T>(gout_g, cols_g, gwp + wg * Og * KCg, KCg, /*accumulate=*/true);
        }
        // Column gradient -> input gradient (scattered into this chunk's image) and offset /
        // mask gradients (summed over the group's channels; this tile owns them).
        for (int64_t g = 0; g < OG; ++g) {
          const SampleTable<T> tab{table.data() + g * K * tile, tile, K, len};
          T* acc_y = acc.data();
          T* acc_x = acc_y + K * tile;
          T* acc_m = acc_x + K * tile;
          std::fill(acc.begin(), acc.end(), T(0));
          for (const ChannelRun& run : runs[g])
            sample_grad(gcp, KC, tab, x_n, gi_n, run, acc_y, acc_x, acc_m);
          T* go_n = gop + n * OG * 2 * K * P;
          for (int64_t k = 0; k < K; ++k) {
            T* dy = go_n + ((g * K + k) * 2) * P + p0;
            T* dx = dy + P;
            std::copy(acc_y + k * tile, acc_y + k * tile + len, dy);
            std::copy(acc_x + k * tile, acc_x + k * tile + len, dx);
            if (gmp) std::copy(acc_m + k * tile, acc_m + k * tile + len,
                               gmp + n * OG * K * P + (g * K + k) * P + p0);
          }
        }
      }
      weight_parts[j] = gw;
    }
  });
  // Fixed-order reductions of the chunks' private parts.
  grad_weight.copy_(weight_parts[0]);
  for (int64_t j = 1; j < chunks; ++j) grad_weight.add_(weight_parts[j]);
  for (int64_t j = 0; j < chunks; ++j)
    for (auto& [n, part] : image_parts[j]) grad_input_h[n].view({image}).add_(part);
}

at::Tensor as_compute(const at::Tensor& t) {
  // float16 / bfloat16 run in float32 on the CPU (as torch's CPU convolutions accumulate).
  const auto st = t.scalar_type();
  return (st == at::kHalf || st == at::kBFloat16) ? t.to(at::kFloat).contiguous() : t.contiguous();
}

// dst[n][j][i] = src[n][i][j] for n images of rows x cols, in blocks of 16 x 64 (both sides'
// cache lines are used whole while they are in L1; torch's copy of the permuted view runs at
// a few GB/s on these shapes).
template <typename T>
void transpose_images(const T* src, int64_t images, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kRows = 16, kCols = 64;
  const int64_t blocks = (rows + kRows - 1) / kRows;
  at::parallel_for(0, images * blocks, 1, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      const int64_t n = task / blocks, i0 = (task % blocks) * kRows;
      const int64_t i1 = std::min(rows, i0 + kRows);
      const T* s = src + n * rows * cols;
      T* d = dst + n * rows * cols;
      for (int64_t j0 = 0; j0 < cols; j0 += kCols) {
        const int64_t j1 = std::min(cols, j0 + kCols);
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t i = i0; i < i1; ++i) d[j * rows + i] = s[i * cols + j];
      }
    }
  });
}

// (N, C, H, W) <-> (N, H, W, C) contiguous, in the compute type; no copy for an input that is
// already channels_last.
at::Tensor as_compute_channels_last(const at::Tensor& t) {
  const auto st = t.scalar_type();
  const at::Tensor c = (st == at::kHalf || st == at::kBFloat16) ? t.to(at::kFloat) : t;
  const at::Tensor v = c.permute({0, 2, 3, 1});
  if (v.is_contiguous() || !c.is_contiguous()) return v.contiguous();
  at::Tensor out = at::empty(v.sizes(), c.options());
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "deform_conv2d", [&] {
    transpose_images(c.const_data_ptr<scalar_t>(), c.size(0), c.size(1), c.size(2) * c.size(3),
                     out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor from_channels_last(const at::Tensor& h) {
  at::Tensor out = at::empty({h.size(0), h.size(3), h.size(1), h.size(2)}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "deform_conv2d_backward", [&] {
    transpose_images(h.const_data_ptr<scalar_t>(), h.size(0), h.size(1) * h.size(2), h.size(3),
                     out.data_ptr<scalar_t>());
  });
  return out;
}

Params make_params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   int64_t groups, int64_t offset_groups, bool use_mask) {
  return Params{sh, sw, ph, pw, dh, dw, groups, offset_groups, use_mask};
}

at::Tensor deform_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& offset, const at::Tensor& mask,
                             const at::Tensor& bias, int64_t stride_h, int64_t stride_w,
                             int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w,
                             int64_t groups, int64_t offset_groups, bool use_mask) {
  const Params p = make_params(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                               offset_groups, use_mask);
  const Shape s = check(input, weight, offset, mask, bias, p);
  // The kernels call ATen (mm) on views of the arguments: below autograd (the op has its own).
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  at::Tensor x = as_compute_channels_last(input), w = as_compute(weight), off = as_compute(offset);
  at::Tensor m = use_mask ? as_compute(mask) : mask, b = as_compute(bias);
  at::Tensor out = at::empty({s.batch, s.out_channels, s.out_h, s.out_w}, x.options());
  if (out.numel() > 0) {
    if (s.channels == 0) {
      out.copy_(b.view({1, -1, 1, 1}).expand_as(out));
    } else {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "deform_conv2d", [&] {
        forward_kernel<scalar_t>(x, w, off, m, b, out, Geometry{s, p});
      });
    }
  }
  return out.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward_cpu(
    const at::Tensor& grad_, const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& offset, const at::Tensor& mask, const at::Tensor& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t offset_groups, bool use_mask) {
  const Params p = make_params(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
                               offset_groups, use_mask);
  const Shape s = check(input, weight, offset, mask, bias, p);
  check_grad(grad_, s);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  TORCH_CHECK(grad_.scalar_type() == input.scalar_type() && grad_.device() == input.device(),
              "deform_conv2d_backward: grad must have input's dtype and device");
  at::Tensor x = as_compute_channels_last(input), w = as_compute(weight), off = as_compute(offset);
  at::Tensor m = use_mask ? as_compute(mask) : mask, grad = as_compute(grad_);
  // The kernel's layouts: the input gradient channels-last like x, the weight gradient
  // (out channel, tap, channel); both returned as weight and input are (contiguous).
  at::Tensor gi_h = at::zeros_like(x);
  at::Tensor gw_t = at::zeros({s.out_channels, s.taps() * s.channels_per_group()}, w.options());
  at::Tensor go = at::zeros_like(off);
  at::Tensor gm = use_mask ? at::zeros_like(m) : at::zeros_like(mask);
  if (grad.numel() > 0 && s.channels > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "deform_conv2d_backward", [&] {
      backward_kernel<scalar_t>(grad, x, w, off, m, gi_h, gw_t, go, gm, Geometry{s, p});
    });
  }
  at::Tensor gi = from_channels_last(gi_h);
  at::Tensor gw = gw_t.view({s.out_channels, s.taps(), s.channels_per_group()})
                      .transpose(1, 2).contiguous().view(w.sizes());
  at::Tensor gb = grad.sum({0, 2, 3});
  const auto st = input.scalar_type();
  return {gi.to(st), gw.to(st), go.to(st), gm.to(st), gb.to(st)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("deform_conv2d", &deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", &deform_conv2d_backward_cpu);
}

}  // namespace pyseg::deform_conv
