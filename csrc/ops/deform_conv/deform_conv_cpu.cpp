// deform_conv2d CPU kernels.
//
// The work is split into tasks of (image, tile of output pixels). A tile is sized so that its
// column matrix (C * kh * kw rows by tile pixels) stays in L2. For each tile and offset group
// the four corner positions and bilinear weights of every (tap, pixel) sample are computed once
// (a sampling table) and reused by every channel of the group; the tile's columns are then
// multiplied by the weight (packed once per call) with pyseg's GEMM (common/gemm.h) straight
// into the output. Tasks run under
// at::parallel_for, so batch 1 and prime batch sizes use every thread, and no buffer larger
// than a tile is allocated in the forward pass.
//
// Backward runs the same tasks in kBackwardChunks contiguous chunks (a constant, not the
// thread count, so that the sums below round the same way on any machine). A chunk recomputes the
// tile's columns, forms the column gradient W^T * grad with the GEMM, accumulates its private
// weight gradient and, in one pass over the column gradient, scatters into the input gradient
// and gathers the offset and mask gradients (which the tile owns outright). Input-gradient
// planes of an image that lies entirely inside one chunk are written in place; an image split
// between chunks gets one private buffer per chunk, and these (and the private weight
// gradients) are summed in chunk order afterwards: deterministic, no atomics.
//
// Sampling follows torchvision: a sample at (y, x) is zero if y <= -1, y >= H, x <= -1 or
// x >= W; otherwise corners outside the image count as zero. Corners that do not count are
// never read, so an Inf or NaN in the image reaches only the outputs that really sample it. The offset gradient uses torchvision's
// coordinate weights (the in-image corners, without the cut-off above).
// At integer positions the weights are exactly (1, 0, 0, 0), so zero offsets give exactly the
// columns of im2col and the result is F.conv2d's up to the GEMM's summation order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/gemm.h"
#include "ops/deform_conv/deform_conv.h"

namespace pyseg::deform_conv {
namespace {

// Bytes one column tile may take (the backward pass holds two: columns and their gradient).
constexpr int64_t kColumnTileBytes = 512 * 1024;
constexpr int64_t kMinTilePixels = 256;

template <typename T>
struct Sample {
  int32_t idx[4];  // positions of the corners (y0,x0) (y0,x1) (y1,x0) (y1,x1) in the plane
  T w[4];          // bilinear weights (zero for corners outside the image or cut off)
  T ly, lx;        // fractional parts, for the coordinate weights of the offset gradient
  T m;             // mask value (1 without mask)
  uint32_t valid;  // bit i: corner i lies inside the image (for the coordinate weights)
  uint32_t use;    // bit i: corner i enters the bilinear value (valid and not cut off)
};

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

// The bilinear value of sample a in plane xc: only the corners it uses are read.
template <typename T>
inline T bilinear(const Sample<T>& a, const T* xc) {
  T v = 0;
  for (int i = 0; i < 4; ++i)
    if ((a.use >> i) & 1u) v += a.w[i] * xc[a.idx[i]];
  return v;
}

// The forward pass needs only the corner positions and the mask-scaled weights: a compact
// table (32 bytes per float sample) keeps more of it in L1 while every channel walks it.
template <typename T>
struct FwdSample {
  int32_t idx[4];
  T w[4];
};

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
    for (int64_t t = 0; t < len; ++t) {
      const int64_t q = p0 + t, oy = q / s.out_w, ox = q % s.out_w;
      const T y = static_cast<T>(oy * p.stride_h - p.pad_h + i * p.dil_h) + dy[q];
      const T x = static_cast<T>(ox * p.stride_w - p.pad_w + j * p.dil_w) + dx[q];
      make_sample(row[t], y, x, mk ? mk[q] : T(1), s.in_h, s.in_w);
    }
  }
}

// cols[(c * K + k) * ld + t] = mask * bilinear(x_c, sample) for the channels of offset group g.
template <typename T>
void fill_columns(T* cols, int64_t ld, const Sample<T>* table, const T* x_n, int64_t g,
                  int64_t len, const Shape& s) {
  const int64_t K = s.taps(), Cg = s.channels_per_offset_group(), HW = s.in_plane();
  for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
    const T* xc = x_n + c * HW;
    for (int64_t k = 0; k < K; ++k) {
      const Sample<T>* e = table + k * ld;
      T* col = cols + (c * K + k) * ld;
      for (int64_t t = 0; t < len; ++t) {
        col[t] = e[t].m * bilinear(e[t], xc);
      }
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

template <typename T>
void compact_table(FwdSample<T>* dst, const Sample<T>* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 4; ++c) {
      const bool use = (src[i].use >> c) & 1u;
      dst[i].idx[c] = use ? src[i].idx[c] : -1;
      dst[i].w[c] = use ? src[i].m * src[i].w[c] : T(0);
    }
  }
}

template <typename T>
void fill_columns_fwd(T* cols, int64_t ld, const FwdSample<T>* table, const T* x_n, int64_t g,
                      int64_t len, const Shape& s) {
  const int64_t K = s.taps(), Cg = s.channels_per_offset_group(), HW = s.in_plane();
  for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
    const T* xc = x_n + c * HW;
    for (int64_t k = 0; k < K; ++k) {
      const FwdSample<T>* e = table + k * ld;
      T* col = cols + (c * K + k) * ld;
      for (int64_t t = 0; t < len; ++t) {
        const FwdSample<T>& a = e[t];
        // Unused corners (idx -1) are not read: select, never multiply by 0.
        T v = 0;
        for (int i = 0; i < 4; ++i) v += a.idx[i] >= 0 ? a.w[i] * xc[a.idx[i]] : T(0);
        col[t] = v;
      }
    }
  }
}

template <typename T>
void forward_kernel(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& offset,
                    const at::Tensor& mask, const at::Tensor& bias, at::Tensor& out,
                    const Geometry& geo) {
  const Shape& s = geo.s;
  const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K;
  const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
  const int64_t tile = tile_pixels(s, sizeof(T));
  const int64_t tiles = (P + tile - 1) / tile;
  const T* wp = weight.const_data_ptr<T>();
  std::vector<cpu::PackedMatrix<T>> w_packed;  // per group: Og x CgK
  for (int64_t wg = 0; wg < G; ++wg)
    w_packed.push_back(cpu::pack_a(cpu::MatrixView<T>(wp + wg * Og * CgK, Og, CgK, CgK)));
  const T* xp = x.const_data_ptr<T>();
  const T* op = offset.const_data_ptr<T>();
  const T* mp = geo.p.use_mask ? mask.const_data_ptr<T>() : nullptr;
  const T* bp = bias.const_data_ptr<T>();
  T* outp = out.data_ptr<T>();
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    at::Tensor cols = at::empty({CK, tile}, x.options());
    std::vector<Sample<T>> table(static_cast<size_t>(K * tile));
    std::vector<FwdSample<T>> compact(static_cast<size_t>(K * tile));
    T* cp = cols.data_ptr<T>();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles, p0 = (task % tiles) * tile, len = std::min(tile, P - p0);
      const T* x_n = xp + n * s.channels * s.in_plane();
      const T* off_n = op + n * s.offset_groups * 2 * K * P;
      const T* mask_n = mp ? mp + n * s.offset_groups * K * P : nullptr;
      for (int64_t g = 0; g < s.offset_groups; ++g) {
        build_table(table.data(), tile, off_n, mask_n, g, p0, len, geo);
        compact_table(compact.data(), table.data(), K * tile);
        fill_columns_fwd(cp, tile, compact.data(), x_n, g, len, s);
      }
      T* o = outp + n * s.out_channels * P;
      for (int64_t wg = 0; wg < G; ++wg)
        cpu::gemm<T>(w_packed[wg], cpu::MatrixView<T>(cp + wg * CgK * tile, CgK, len, tile),
                     o + wg * Og * P + p0, P);
      for (int64_t oc = 0; oc < s.out_channels; ++oc)
        for (int64_t t = 0; t < len; ++t) o[oc * P + p0 + t] += bp[oc];
    }
  });
}

// Chunks of the backward's tasks, each with private sums reduced in a fixed order: enough for
// the threads of a usual CPU, few enough that the private weight gradients stay small.
constexpr int64_t kBackwardChunks = 8;

template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                     const at::Tensor& offset, const at::Tensor& mask, at::Tensor& grad_input,
                     at::Tensor& grad_weight, at::Tensor& grad_offset, at::Tensor& grad_mask,
                     const Geometry& geo) {
  const Shape& s = geo.s;
  const bool use_mask = geo.p.use_mask;
  const int64_t K = s.taps(), P = s.out_plane(), CK = s.channels * K, HW = s.in_plane();
  const int64_t G = s.groups, Og = s.out_channels_per_group(), CgK = s.channels_per_group() * K;
  const int64_t OG = s.offset_groups, Cog = s.channels_per_offset_group();
  const int64_t tile = tile_pixels(s, sizeof(T));
  const int64_t tiles = (P + tile - 1) / tile;
  const int64_t tasks = s.batch * tiles;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(tasks, kBackwardChunks));
  // Per group, W_g^T (CgK x Og) packed once for the column gradient.
  std::vector<cpu::PackedMatrix<T>> wt_packed;
  for (int64_t wg = 0; wg < G; ++wg)
    wt_packed.push_back(cpu::pack_a(
        cpu::MatrixView<T>(weight.const_data_ptr<T>() + wg * Og * CgK, Og, CgK, CgK).transposed()));
  const T* gp = grad.const_data_ptr<T>();
  const T* xp = x.const_data_ptr<T>();
  const T* op = offset.const_data_ptr<T>();
  const T* mp = use_mask ? mask.const_data_ptr<T>() : nullptr;
  T* gip = grad_input.data_ptr<T>();
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
    for (int64_t j = jb; j < je; ++j) {
      const auto [t0, t1] = task_range(j);
      at::Tensor gw = at::zeros({s.out_channels, CgK}, x.options());
      at::Tensor cols = at::empty({CK, tile}, x.options());
      at::Tensor gcols = at::empty({CK, tile}, x.options());
      std::vector<Sample<T>> table(static_cast<size_t>(OG * K * tile));
      std::vector<T> acc(static_cast<size_t>(3 * K * tile));
      T* cp = cols.data_ptr<T>();
      T* gcp = gcols.data_ptr<T>();
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
            at::Tensor part = at::zeros({image}, x.options());
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
          fill_columns(cp, tile, tab, x_n, g, len, s);
        }
        for (int64_t wg = 0; wg < G; ++wg) {
          const cpu::MatrixView<T> gout_g(gp + (n * s.out_channels + wg * Og) * P + p0, Og, len, P);
          const cpu::MatrixView<T> cols_g(cp + wg * CgK * tile, CgK, len, tile);
          cpu::gemm<T>(wt_packed[wg], gout_g, gcp + wg * CgK * tile, tile);
          cpu::gemm<T>(gout_g, cols_g.transposed(), gwp + wg * Og * CgK, CgK, /*accumulate=*/true);
        }
        // Column gradient -> input gradient (scatter into this chunk's planes) and offset /
        // mask gradients (gathered over the group's channels; this tile owns them).
        for (int64_t g = 0; g < OG; ++g) {
          const Sample<T>* tab = table.data() + g * K * tile;
          T* acc_y = acc.data();
          T* acc_x = acc_y + K * tile;
          T* acc_m = acc_x + K * tile;
          std::fill(acc.begin(), acc.end(), T(0));
          for (int64_t c = g * Cog; c < (g + 1) * Cog; ++c) {
            const T* xc = x_n + c * HW;
            T* gic = gi_n + c * HW;
            for (int64_t k = 0; k < K; ++k) {
              const Sample<T>* e = tab + k * tile;
              const T* gcol = gcp + (c * K + k) * tile;
              T* ay = acc_y + k * tile;
              T* ax = acc_x + k * tile;
              T* am = acc_m + k * tile;
              for (int64_t t = 0; t < len; ++t) {
                const Sample<T>& a = e[t];
                if (!a.valid) continue;  // no corner in the image: every gradient is zero
                const T gv = gcol[t];
                const T gm = a.m * gv;
                T v[4];
                for (int i = 0; i < 4; ++i) v[i] = (a.valid >> i) & 1u ? xc[a.idx[i]] : T(0);
                // Input gradient: the transpose of the bilinear sample (used corners only).
                for (int i = 0; i < 4; ++i)
                  if ((a.use >> i) & 1u) gic[a.idx[i]] += a.w[i] * gm;
                // torchvision's coordinate weights (in-image corners, no cut-off).
                const T cy = a.lx * (v[3] - v[1]) + (T(1) - a.lx) * (v[2] - v[0]);
                const T cx = a.ly * (v[3] - v[2]) + (T(1) - a.ly) * (v[1] - v[0]);
                ay[t] += a.m * cy * gv;
                ax[t] += a.m * cx * gv;
                am[t] += gv * bilinear(a, xc);
              }
            }
          }
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
  grad_weight.view({s.out_channels, CgK}).copy_(weight_parts[0]);
  for (int64_t j = 1; j < chunks; ++j) grad_weight.view({s.out_channels, CgK}).add_(weight_parts[j]);
  for (int64_t j = 0; j < chunks; ++j)
    for (auto& [n, part] : image_parts[j]) grad_input[n].view({image}).add_(part);
}

at::Tensor as_compute(const at::Tensor& t) {
  // float16 / bfloat16 run in float32 on the CPU (as torch's CPU convolutions accumulate).
  const auto st = t.scalar_type();
  return (st == at::kHalf || st == at::kBFloat16) ? t.to(at::kFloat).contiguous() : t.contiguous();
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
  at::Tensor x = as_compute(input), w = as_compute(weight), off = as_compute(offset);
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
  at::Tensor x = as_compute(input), w = as_compute(weight), off = as_compute(offset);
  at::Tensor m = use_mask ? as_compute(mask) : mask, grad = as_compute(grad_);
  at::Tensor gi = at::zeros_like(x), gw = at::zeros_like(w), go = at::zeros_like(off);
  at::Tensor gm = use_mask ? at::zeros_like(m) : at::zeros_like(mask);
  if (grad.numel() > 0 && s.channels > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "deform_conv2d_backward", [&] {
      backward_kernel<scalar_t>(grad, x, w, off, m, gi, gw, go, gm, Geometry{s, p});
    });
  }
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
