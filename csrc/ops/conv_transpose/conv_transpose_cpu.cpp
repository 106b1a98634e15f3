// conv_transpose2d CPU kernels, on pyseg's packed GEMM (common/gemm.h).
//
// Forward: the sub-pixel (phase) decomposition. Output row oh receives input row ih through
// tap kh iff oh + pad = ih * stride + kh * dilation, so the outputs with oh = ph (mod stride)
// (one "phase") read a fixed set of taps, each at a fixed row offset:
//     ih = jh + off(kh),  oh = ph + stride * jh,  off(kh) = (ph + pad - kh * dilation) / stride.
// Per phase the transposed conv is an ordinary (stride 1) correlation: gather the phase's
// input taps into a column matrix, one GEMM against the phase's weight (packed once per call),
// and write the result into the strided output. No col2im and no overlap between writers:
// every output element is written exactly once. Only phases that hold outputs exist (at most
// out_h x out_w of them), so the work follows the output, not stride_h * stride_w.
//
// Backward: grad_input is an ordinary conv2d of grad_output with the same weight (im2col of
// grad_output + GEMM); grad_weight is the correlation of input with that same column matrix,
// accumulated in a fixed number of partial sums (kWeightChunks, independent of the thread
// count) and reduced in a fixed order. grad_bias sums grad_output per channel.
//
// Layouts: NCHW and channels_last are each computed in their own layout. In NCHW a column
// matrix is (taps x channels) x pixels and the GEMM is weight x columns; in channels_last it
// is pixels x (taps x channels) and the GEMM is columns x weight, written straight into NHWC
// rows. The forward's channels_last columns keep each tap's channels contiguous (a gather
// copies channel runs). The backward orders K as the weight stores it, so that its GEMMs use
// the weight as stored and write grad_weight in the same layout: (co, kh, kw) for a
// contiguous weight, (kh, kw, co) for a channels_last one (then grad_weight is channels_last,
// as torch returns it, and the channels_last column matrix copies channel runs).
//
// Tiles: a task is a range of phase rows across the batch (so small images share a GEMM),
// sized so its column matrix takes about half the L2 but never fewer than kMinColumns
// columns, then split further until every thread has work. With fewer tasks than threads
// the tasks run one by one and each GEMM is parallel inside.
//
// Stride 1 (the phases are the whole output) takes the implicit form instead
// (forward_implicit): the GEMM reads a zero-bordered copy of the input through per-tap
// offsets, so no column matrix is built.
//
// Inputs much smaller than the kernel's reach (a 7x7 kernel on a 1x1 input) take the scatter
// form instead (forward_scatter): one GEMM with the weight as stored, then a fixed-order gather.
//
// Deterministic: every sum has a fixed order (the GEMM's, and the fixed chunks above).
// Half and BFloat16 are computed in float32 and rounded once at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "common/channel_sums.h"
#include "common/cpu_capability.h"
#include "common/gemm.h"
#include "common/scratch.h"
#include "common/tiles.h"
#include "ops/conv_transpose/conv_transpose.h"

namespace pyseg::conv_transpose {
namespace {

using cpu::AxisPhase;
using cpu::axis_phases;
using cpu::ceil_div;
using cpu::kWeightChunks;
using cpu::MatrixView;
using cpu::PackedMatrix;
using cpu::rows_per_tile;
using cpu::run_tasks;

// Multiply-adds per phase below which the phases' set-up outweighs their GEMMs (measured on
// FCN's upsampling layers: 64 phases of 52K multiply-adds run 1.7x slower than the scatter form).
constexpr double kSmallPhaseMacs = 1 << 17;

// Offset of weight element (co, tap) of one input channel, in the order (co, tap): the
// columns of the weight as a Cig x (Cog kH kW) matrix, whatever its layout.
std::vector<int64_t> co_tap_offsets(const Params& p) {
  const int64_t kHW = p.kernel_h * p.kernel_w;
  std::vector<int64_t> off(p.out_per_group * kHW);
  for (int64_t co = 0; co < p.out_per_group; ++co)
    for (int64_t t = 0; t < kHW; ++t) off[co * kHW + t] = co * p.w_co_stride + t * p.w_tap_stride;
  return off;
}

// A GEMM operand (rows x cols, A if is_a) made of one group's weight w_g[ci][co][tap]
// (tap = kh * kW + kw), for the taps listed in `taps`: place(ci, co, t) gives the operand
// element (edge index e, k index l) that w_g[ci][co][taps[t]] becomes, e being the row of A or
// the column of B. The weight is read once in its stored order (ci, co, tap) and written
// straight into the packed panels (used by the disjoint form, whose weights are small).
template <typename T, typename Place>
PackedMatrix<T> pack_weight(const T* wg, int64_t Cig, int64_t Cog, int64_t kHW, int64_t s_co,
                            int64_t s_t, const std::vector<int64_t>& taps, int64_t rows, int64_t cols,
                            bool is_a, const Place& place) {
  PackedMatrix<T> packed = cpu::packed_zeros<T>(rows, cols, is_a);
  const int64_t edges = is_a ? rows : cols, ks = packed.k_stride(), ntaps = taps.size();
  std::vector<int64_t> edge_offset(edges);  // no division per element
  for (int64_t e = 0; e < edges; ++e) edge_offset[e] = packed.edge_offset(e);
  T* out = packed.data.data();
  at::parallel_for(0, Cig, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, Cog * kHW)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t ci = begin; ci < end; ++ci)
                       for (int64_t co = 0; co < Cog; ++co) {
                         const T* s = wg + ci * Cog * kHW + co * s_co;
                         for (int64_t t = 0; t < ntaps; ++t) {
                           const auto [e, l] = place(ci, co, t);
                           out[edge_offset[e] + l * ks] = s[taps[t] * s_t];
                         }
                       }
                   });
  return packed;
}

// The phase forward's weight operand for one group: output channel co is the edge index,
// the k index is kk = (ci, t) in NCHW (A = Cog x K) or (t, ci) in channels_last (B = K x Cog),
// tap t being kernel tap taps[t] of w_g[ci][co]. Written in the packed layout's own order
// (each panel front to back, its zero padding included, no zero-fill pass): the operand is
// the largest array such a layer touches (DeconvNet's 512-channel weights hold 9.4 MB), so
// the pass is bound by memory traffic.
template <typename T>
PackedMatrix<T> pack_phase_weight(const T* wg, int64_t Cig, int64_t Cog, int64_t kHW,
                                  int64_t s_co, int64_t s_t, const std::vector<int64_t>& taps,
                                  bool cl) {
  const int64_t ntaps = taps.size(), K = Cig * ntaps;
  PackedMatrix<T> packed = cl ? cpu::packed_zeros<T>(K, Cog, false, false)
                              : cpu::packed_zeros<T>(Cog, K, true, false);
  T* out = packed.data.data();
  if (packed.step == 0) {  // a row-major matrix (PYSEG_GEMM=aten)
    for (int64_t ci = 0; ci < Cig; ++ci)
      for (int64_t co = 0; co < Cog; ++co)
        for (int64_t t = 0; t < ntaps; ++t) {
          const T v = wg[ci * Cog * kHW + co * s_co + taps[t] * s_t];
          if (cl) {
            out[(t * Cig + ci) * Cog + co] = v;
          } else {
            out[co * K + ci * ntaps + t] = v;
          }
        }
    return packed;
  }
  const int64_t step = packed.step;
  at::parallel_for(0, ceil_div(Cog, step), 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t co0 = q * step, n = std::min(step, Cog - co0);
      T* d = out + q * step * K;  // this panel, kk = 0, 1, ... in turn
      // The panel's block of w_g[ci] (n x kHW values, contiguous) for ci + kAhead, fetched
      // ahead: the blocks are a row of the weight apart, too far for the hardware prefetcher.
      constexpr int64_t kAhead = 4;
      const int64_t block = n * kHW * int64_t(sizeof(T));
      auto prefetch = [&](int64_t ci) {
        if (ci >= Cig || s_t != 1) return;  // (a channels_last weight is read in runs of co)
        const char* b = reinterpret_cast<const char*>(wg + (ci * Cog + co0) * kHW);
        for (int64_t o = 0; o < block; o += 64) __builtin_prefetch(b + o);
      };
      auto put = [&](int64_t ci, int64_t t) {
        if (t == 0) prefetch(ci + kAhead);
        const T* s = wg + ci * Cog * kHW + co0 * s_co + taps[t] * s_t;
        for (int64_t r = 0; r < n; ++r) d[r] = s[r * s_co];
        for (int64_t r = n; r < step; ++r) d[r] = T(0);
        d += step;
      };
      if (cl) {
        for (int64_t t = 0; t < ntaps; ++t)
          for (int64_t ci = 0; ci < Cig; ++ci) put(ci, t);
      } else {
        for (int64_t ci = 0; ci < Cig; ++ci)
          for (int64_t t = 0; t < ntaps; ++t) put(ci, t);
      }
    }
  });
  return packed;
}

template <typename T>
void fill_bias(const Params& p, const T* bd, T* yd, bool cl) {
  const int64_t plane = p.out_h * p.out_w, C = p.out_channels;
  at::parallel_for(0, p.batch * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T v = bd ? bd[i % C] : T(0);
      const int64_t n = i / C, c = i % C;
      if (cl) {
        T* d = yd + n * plane * C + c;
        for (int64_t j = 0; j < plane; ++j) d[j * C] = v;
      } else {
        std::fill(yd + i * plane, yd + (i + 1) * plane, v);
      }
    }
  });
}

// Multiply-adds of the phase decomposition (taps gathered per phase, including the taps that
// fall outside the input) and of the scatter form below (every input pixel times every tap).
double phase_macs(const Params& p) {
  const auto hp = axis_phases(p.stride_h, p.pad_h, p.dil_h, p.kernel_h, p.out_h);
  const auto wp = axis_phases(p.stride_w, p.pad_w, p.dil_w, p.kernel_w, p.out_w);
  double h = 0, w = 0;
  for (const AxisPhase& a : hp) h += double(a.count) * a.k.size();
  for (const AxisPhase& a : wp) w += double(a.count) * a.k.size();
  return h * w;
}

double scatter_macs(const Params& p) {
  return double(p.in_h) * p.in_w * p.kernel_h * p.kernel_w;
}

// The scatter form (below) instead of the phases: when the phases would mostly multiply zeros
// (inputs much smaller than the kernel), or when each phase's GEMM is too small for the GEMM
// to pay for itself (the per-phase set-up then dominates), as long as its column matrix
// (pixels x taps x channels) stays within 2^26 elements.
bool use_scatter_form(const Params& p) {
  const double scatter = scatter_macs(p), phase = phase_macs(p);
  if (scatter * p.batch * p.out_per_group > double(1 << 26)) return false;
  if (phase > 4 * scatter) return true;
  const double phases = double(std::min(p.stride_h, p.out_h)) * std::min(p.stride_w, p.out_w);
  const double per_phase = phase * p.batch * p.in_per_group * p.out_per_group / phases;
  return phases >= 16 && per_phase < kSmallPhaseMacs;
}

// The scatter form, for inputs much smaller than the kernel's reach (DeconvNet's 7x7
// 'fc6-deconv' on a 1x1 input, where a phase would gather 49 taps of which one is inside),
// and for layers whose phases are too small to feed a GEMM (FCN's 64x64 stride-32
// upsampling of 3 to 21 classes: 1024 phases of a few thousand multiply-adds each):
//     cols (pixels x (co, kh, kw)) = x (pixels x ci) * w_g (ci x (co, kh, kw)),
// one GEMM over the whole batch reading the weight once as stored, then each output row
// gathers its taps in a fixed order (below): deterministic, no atomics.
// The largest column matrix of the scatter form kept per thread between calls (32 MB of
// float32); use_scatter_form admits up to 2^26 elements, allocated per call above this.
constexpr int64_t kMaxKeptColumns = int64_t(1) << 23;

template <typename T>
void forward_scatter(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kW = p.kernel_w, kHW = p.kernel_h * kW, K = Cog * kHW;
  const int64_t s_co = p.w_co_stride, s_t = p.w_tap_stride;
  const int64_t NP = p.batch * H * W;
  const auto hp = axis_phases(p.stride_h, p.pad_h, p.dil_h, p.kernel_h, p.out_h);
  const auto wp = axis_phases(p.stride_w, p.pad_w, p.dil_w, p.kernel_w, p.out_w);
  // Both buffers are kept per thread across calls (fresh multi-megabyte buffers cost page
  // faults on every call: FCN's upsampling layers ran at half speed or less every other
  // call), except the rare columns of over kMaxKeptColumns elements, allocated per call.
  T* xt = cpu::thread_scratch<T, 7>(NP * Cig);
  std::vector<T> cols_owned;
  T* cols = nullptr;
  if (NP * K <= kMaxKeptColumns) {
    cols = cpu::thread_scratch<T, 8>(NP * K);
  } else {
    cols_owned.resize(NP * K);
    cols = cols_owned.data();
  }
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t q = 0; q < NP; ++q) {
      const int64_t n = q / (H * W), pix = q % (H * W);
      for (int64_t ci = 0; ci < Cig; ++ci)
        xt[q * Cig + ci] = cl ? xd[q * Cin + g * Cig + ci] : xd[(n * Cin + g * Cig + ci) * H * W + pix];
    }
    // The weight as stored (it can be large: DeconvNet's fc6-deconv holds 411 MB).
    cpu::gemm<T>(MatrixView<T>(xt, NP, Cig, Cig), MatrixView<T>(wd + g * Cig * K, Cig, K, K),
                 cols, K);
    // Output row (n, oh) sums only the tap rows of its phase (oh % stride), in kh order,
    // after the bias. Within a tap row, input column iw adds its taps kw to outputs
    // ow = iw * stride - pad + kw * dilation: with dilation 1 a contiguous run of kW values per
    // channel, in iw order; otherwise each w-phase adds its taps in kw order.
    at::parallel_for(0, p.batch * Ho, 1, [&](int64_t b, int64_t e) {
      std::vector<T> acc(Cog * Wo);  // (co, ow)
      for (int64_t row = b; row < e; ++row) {
        const int64_t n = row / Ho, oh = row % Ho, jh = oh / p.stride_h;
        const AxisPhase& ah = hp[oh % p.stride_h];
        for (int64_t co = 0; co < Cog; ++co)
          std::fill(acc.data() + co * Wo, acc.data() + (co + 1) * Wo, bd ? bd[g * Cog + co] : T(0));
        for (size_t th = 0; th < ah.k.size(); ++th) {
          const int64_t ih = jh + ah.off[th];
          if (ih < 0 || ih >= H) continue;
          // cols[(n, ih, iw)][co, kh, kw]: the weight's strides (so (kh, kw, co) for a
          // channels_last weight, whose rows the GEMM also reads as stored).
          const T* cols_row = cols + (n * H + ih) * W * K + ah.k[th] * kW * s_t;
          if (p.dil_w == 1) {
            for (int64_t iw = 0; iw < W; ++iw) {
              const int64_t ow0 = iw * p.stride_w - p.pad_w;
              const int64_t k_lo = std::max<int64_t>(0, -ow0), k_hi = std::min<int64_t>(kW, Wo - ow0);
              for (int64_t co = 0; co < Cog; ++co) {
                const T* src = cols_row + iw * K + co * s_co;
                T* d = acc.data() + co * Wo + ow0;
                for (int64_t k = k_lo; k < k_hi; ++k) d[k] += src[k * s_t];
              }
            }
            continue;
          }
          for (const AxisPhase& aw : wp) {
            for (size_t tw = 0; tw < aw.k.size(); ++tw) {
              // Outputs jw of this phase read input column iw = jw + off, when inside.
              const int64_t off = aw.off[tw];
              const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(aw.count, W - off);
              const T* c = cols_row + off * K + aw.k[tw] * s_t;
              for (int64_t co = 0; co < Cog; ++co) {
                T* d = acc.data() + co * Wo + aw.phase;
                for (int64_t jw = lo; jw < hi; ++jw) d[p.stride_w * jw] += c[jw * K + co * s_co];
              }
            }
          }
        }
        if (cl) {
          T* y_row = yd + (n * Ho + oh) * Wo * Cout + g * Cog;
          for (int64_t ow = 0; ow < Wo; ++ow)
            for (int64_t co = 0; co < Cog; ++co) y_row[ow * Cout + co] = acc[co * Wo + ow];
        } else {
          for (int64_t co = 0; co < Cog; ++co)
            std::memcpy(yd + ((n * Cout + g * Cog + co) * Ho + oh) * Wo, acc.data() + co * Wo,
                        Wo * sizeof(T));
        }
      }
    });
  }
}

// Whether every output reads at most one tap per axis: (kernel - 1) * dilation < stride,
// with a stride above 1 (U-Net's 2x2 stride-2 layers). Then all taps read the same input
// pixels, so the whole layer is one GEMM of the input with the weight as stored (the
// disjoint form below) instead of one GEMM per phase on gathered copies of the input.
bool taps_are_disjoint(const Params& p) {
  return (p.kernel_h - 1) * p.dil_h < p.stride_h && (p.kernel_w - 1) * p.dil_w < p.stride_w &&
         (p.stride_h > 1 || p.stride_w > 1);
}

// For each tap k along one axis, the input indices [lo, hi) whose output index
// i * stride - pad + k * dilation falls inside [0, out); and whether every output is reached.
struct AxisReach {
  std::vector<int64_t> lo, hi;
  bool covers_all = true;
};

AxisReach axis_reach(int64_t stride, int64_t pad, int64_t dil, int64_t kernel, int64_t in,
                     int64_t out) {
  AxisReach r{std::vector<int64_t>(kernel), std::vector<int64_t>(kernel), true};
  int64_t reached = 0;
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t base = k * dil - pad;  // o = i * stride + base
    int64_t lo = base >= 0 ? 0 : (-base + stride - 1) / stride;
    const int64_t lim = out - 1 - base;
    const int64_t hi = std::min(in, lim < 0 ? 0 : lim / stride + 1);
    lo = std::min(lo, hi);
    r.lo[k] = lo;
    r.hi[k] = hi;
    reached += hi - lo;  // distinct outputs: the taps are disjoint
  }
  r.covers_all = reached == out;
  return r;
}

// The disjoint form (taps_are_disjoint): per tile of input rows and group,
//     cols = x_tile (pixels x ci) * w_g (ci x (tap, co))    channels_last, or
//     cols = w_g^T ((co, tap) x ci) * x_tile (ci x pixels)  NCHW, x read in place,
// then every column value is copied (plus the bias) to the one output it belongs to. Each
// output is written once; outputs no tap reaches (stride > kernel) hold the bias. The sums
// are those of the phase form (one term per input channel, in order).
template <typename T>
void forward_disjoint(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kH = p.kernel_h, kW = p.kernel_w, kHW = kH * kW, N = kHW * Cog;
  const AxisReach rh = axis_reach(p.stride_h, p.pad_h, p.dil_h, kH, H, Ho);
  const AxisReach rw = axis_reach(p.stride_w, p.pad_w, p.dil_w, kW, W, Wo);
  if (!rh.covers_all || !rw.covers_all) fill_bias(p, bd, yd, cl);
  // Per group: channels_last B = ci x (tap, co) (each tap's channels contiguous, as in y);
  // NCHW A = (co, tap) x ci, the stored weight transposed.
  std::vector<int64_t> all_taps(kHW);
  for (int64_t t = 0; t < kHW; ++t) all_taps[t] = t;
  const std::vector<int64_t> weight_offsets = co_tap_offsets(p);
  std::vector<PackedMatrix<T>> wpack;
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = wd + g * Cig * N;
    if (cl) {
      wpack.push_back(pack_weight<T>(wg, Cig, Cog, kHW, p.w_co_stride, p.w_tap_stride, all_taps,
                                     Cig, N, false, [&](int64_t ci, int64_t co, int64_t t) {
                                       return std::pair<int64_t, int64_t>(t * Cog + co, ci);
                                     }));
    } else {
      MatrixView<T> wv(wg, Cig, N, N);  // (ci, (co, tap)), the weight's strides
      wv.col_offsets = weight_offsets.data();
      wpack.push_back(cpu::pack_a(wv.transposed()));
    }
  }
  // Tiles of input rows: channels_last any run of rows (pixels are contiguous across the
  // batch), NCHW rows of one image (x is read in place).
  const int64_t rows = rows_per_tile(p.batch * H, W, Cig + N, sizeof(T), G);
  std::vector<std::pair<int64_t, int64_t>> tiles;  // (first global row, rows)
  if (cl) {
    for (int64_t r = 0; r < p.batch * H; r += rows) tiles.push_back({r, std::min(rows, p.batch * H - r)});
  } else {
    for (int64_t n = 0; n < p.batch; ++n)
      for (int64_t r = 0; r < H; r += rows) tiles.push_back({n * H + r, std::min(rows, H - r)});
  }
  const int64_t ntiles = tiles.size();
  run_tasks(ntiles * G, [&](int64_t task) {
    const int64_t g = task / ntiles, row0 = tiles[task % ntiles].first;
    const int64_t nrows = tiles[task % ntiles].second, Jt = nrows * W;
    T* cols = cpu::thread_scratch<T, 1>(N * Jt);
    if (cl) {
      cpu::gemm<T>(MatrixView<T>(xd + row0 * W * Cin + g * Cig, Jt, Cig, Cin), wpack[g], cols, N);
    } else {
      const int64_t n = row0 / H, ih0 = row0 % H;
      cpu::gemm<T>(wpack[g], MatrixView<T>(xd + ((n * Cin + g * Cig) * H + ih0) * W, Cig, Jt, H * W),
                   cols, Jt);
    }
    for (int64_t r = 0; r < nrows; ++r) {
      const int64_t n = (row0 + r) / H, ih = (row0 + r) % H;
      for (int64_t kh = 0; kh < kH; ++kh) {
        if (ih < rh.lo[kh] || ih >= rh.hi[kh]) continue;
        const int64_t oh = ih * p.stride_h - p.pad_h + kh * p.dil_h;
        for (int64_t kw = 0; kw < kW; ++kw) {
          const int64_t t = kh * kW + kw, base = kw * p.dil_w - p.pad_w;
          if (cl) {
            T* yrow = yd + (n * Ho + oh) * Wo * Cout + g * Cog;
            for (int64_t iw = rw.lo[kw]; iw < rw.hi[kw]; ++iw) {
              const T* s = cols + (r * W + iw) * N + t * Cog;
              T* d = yrow + (iw * p.stride_w + base) * Cout;
              if (bd) {
                const T* b = bd + g * Cog;
                for (int64_t co = 0; co < Cog; ++co) d[co] = s[co] + b[co];
              } else {
                std::memcpy(d, s, Cog * sizeof(T));
              }
            }
          } else {
            for (int64_t co = 0; co < Cog; ++co) {
              const T b = bd ? bd[g * Cog + co] : T(0);
              const T* s = cols + (co * kHW + t) * Jt + r * W;
              T* yrow = yd + ((n * Cout + g * Cog + co) * Ho + oh) * Wo + base;
              for (int64_t iw = rw.lo[kw]; iw < rw.hi[kw]; ++iw) yrow[iw * p.stride_w] = s[iw] + b;
            }
          }
        }
      }
    }
  });
}

// Stride 1 on both axes (DeconvNet's and the encoder-decoders' 3x3 layers): the transposed
// conv is a correlation, y[n, oh, ow] = sum_{kh, kw} x[n, oh + pad_h - kh dil_h,
// ow + pad_w - kw dil_w] w[kh, kw], and needs no column matrix. x is copied once into a
// zero-bordered image xp of Hp x Wp pixels (Hp = Ho + (kH - 1) dil_h, Wp likewise) in which
// output pixel m = oh * Wp + ow reads tap (kh, kw) at pixel m + shift, shift = (kH - 1 - kh)
// dil_h Wp + (kW - 1 - kw) dil_w. So the GEMM reads xp in place through one offset per k index
// (a gathered MatrixView; an implicit GEMM), xp being pixels x channels in both layouts:
//   C (m x co) = xp (m x (tap, ci)) * w (K x co),  K = (tap, ci) as in the phase form.
// C has Wp columns per output row; the last Wp - Wo are not outputs and are dropped when C is
// copied into y with the bias (NCHW: transposed). The copies of one input and one output
// replace the phase form's column matrix, kH kW times the input (channels_last forward of
// DeconvNet's and pets-encdec's 3x3 layers: 1.19-1.53x torch's time before, 1.11-1.15x after).
bool use_implicit_form(const Params& p) {
  const int64_t extra_w = (p.kernel_w - 1) * p.dil_w;
  return p.stride_h == 1 && p.stride_w == 1 && extra_w <= p.out_w;  // at most half the columns dropped
}

// dst = N images of Hq x Wq pixels, C values each (pixel-major), followed by `slack` zero
// pixels: src (NCHW, or channels_last with cl) placed with its row 0 at row `top` and column 0
// at column `left` of each image (negative: cropped), zeros elsewhere. The implicit forms'
// zero-bordered copies; NCHW is transposed on the way.
template <typename T>
void pixel_major_bordered(const T* src, bool cl, int64_t N, int64_t C, int64_t H, int64_t W,
                          int64_t Hq, int64_t Wq, int64_t top, int64_t left, int64_t slack, T* dst) {
  const int64_t iw_lo = std::max<int64_t>(0, -left), iw_hi = std::min<int64_t>(W, Wq - left);
  const int64_t wq_lo = iw_lo + left, wq_hi = std::max(wq_lo, iw_hi + left);
  at::parallel_for(0, N * Hq, cl ? 16 : 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / Hq, ih = r % Hq - top;
      T* d = dst + r * Wq * C;
      if (ih < 0 || ih >= H || wq_hi <= wq_lo) {
        std::fill(d, d + Wq * C, T(0));
        continue;
      }
      std::fill(d, d + wq_lo * C, T(0));
      std::fill(d + wq_hi * C, d + Wq * C, T(0));
      if (cl) {
        std::memcpy(d + wq_lo * C, src + ((n * H + ih) * W + iw_lo) * C, (wq_hi - wq_lo) * C * sizeof(T));
      } else {
        const T* s = src + (n * C * H + ih) * W;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t iw = iw_lo; iw < iw_hi; ++iw) d[(iw + left) * C + c] = s[c * H * W + iw];
      }
    }
  });
  std::fill(dst + N * Hq * Wq * C, dst + (N * Hq * Wq + slack) * C, T(0));
}

// The GEMMs of an implicit form, per image, group and block of rows:
//   C (rows Wg x Cg_out) = grid (gathered: pixel m, k index kk at m + offsets[g][kk]) * packed[g],
// the grid holding images of P pixels (rows Wg wide, C_src values each); then the first
// `width` columns of each row of C go to out (Cg_out of C_out channels per group, NCHW or
// channels_last), plus the bias. Blocks are sized by rows_per_tile and evened out.
template <typename T>
void implicit_rows(const T* grid, int64_t P, int64_t N, int64_t G, int64_t rows_out, int64_t Wg,
                   int64_t width, int64_t C_src, int64_t K,
                   const std::vector<std::vector<int64_t>>& offsets,
                   const std::vector<PackedMatrix<T>>& packed, int64_t Cg_out, int64_t C_out,
                   const T* bias, T* out, bool cl) {
  int64_t rows = rows_per_tile(rows_out, Wg, K, sizeof(T), N * G);
  const int64_t blocks = ceil_div(rows_out, rows);
  // A grid larger than the L2 is streamed from further out: the GEMM prefetches its rows
  // (a 64-channel 128 x 128 layer's channels_last forward: 1.20 -> 1.10 of torch's time; on
  // DeconvNet's L2-resident 512-channel grids the prefetches only cost).
  const bool cold = N * P * C_src * int64_t(sizeof(T)) > cpu::l2_cache_bytes();
  rows = ceil_div(rows_out, blocks);
  run_tasks(N * G * blocks, [&](int64_t ti) {
    const int64_t n = ti / (G * blocks), g = ti / blocks % G, r0 = ti % blocks * rows;
    const int64_t nrows = std::min(rows, rows_out - r0), M = nrows * Wg;
    T* c = cpu::thread_scratch<T, 1>(M * Cg_out);
    MatrixView<T> a(grid + (n * P + r0 * Wg) * C_src, M, K, C_src);
    a.col_offsets = offsets[g].data();
    a.cold_rows = cold;
    cpu::gemm<T>(a, packed[g], c, Cg_out);
    for (int64_t r = 0; r < nrows; ++r) {
      const int64_t row = r0 + r;
      if (cl) {
        for (int64_t col = 0; col < width; ++col) {
          T* d = out + ((n * rows_out + row) * width + col) * C_out + g * Cg_out;
          const T* s = c + (r * Wg + col) * Cg_out;
          if (bias) {
            for (int64_t o = 0; o < Cg_out; ++o) d[o] = s[o] + bias[g * Cg_out + o];
          } else {
            std::memcpy(d, s, Cg_out * sizeof(T));
          }
        }
      } else {
        for (int64_t o = 0; o < Cg_out; ++o) {
          T* d = out + ((n * C_out + g * Cg_out + o) * rows_out + row) * width;
          const T* s = c + r * Wg * Cg_out + o;
          const T b = bias ? bias[g * Cg_out + o] : T(0);
          for (int64_t col = 0; col < width; ++col) d[col] = s[col * Cg_out] + b;
        }
      }
    }
  });
}

template <typename T>
void forward_implicit(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const int64_t N = p.batch, G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kH = p.kernel_h, kW = p.kernel_w, kHW = kH * kW, K = Cig * kHW;
  const int64_t Hp = Ho + (kH - 1) * p.dil_h, Wp = Wo + (kW - 1) * p.dil_w;
  // xp row / column of input row / column 0 (negative: input rows cropped by the padding).
  const int64_t top = (kH - 1) * p.dil_h - p.pad_h, left = (kW - 1) * p.dil_w - p.pad_w;
  // The furthest shift reaches (kW - 1) dil_w pixels past an image (only from dropped columns).
  const int64_t P = Hp * Wp, slack = (kW - 1) * p.dil_w;
  T* xp = cpu::thread_scratch<T, 4>((N * P + slack) * Cin);

  pixel_major_bordered(xd, cl, N, Cin, H, W, Hp, Wp, top, left, slack, xp);

  // Per group: the weight operand and the offset of every k index in xp.
  std::vector<int64_t> shift(kHW);
  for (int64_t kh = 0; kh < kH; ++kh)
    for (int64_t kw = 0; kw < kW; ++kw)
      shift[kh * kW + kw] = (kH - 1 - kh) * p.dil_h * Wp + (kW - 1 - kw) * p.dil_w;
  std::vector<int64_t> taps(kHW);
  for (int64_t t = 0; t < kHW; ++t) taps[t] = t;
  std::vector<PackedMatrix<T>> packed;
  std::vector<std::vector<int64_t>> offsets(G, std::vector<int64_t>(K));
  for (int64_t g = 0; g < G; ++g) {
    packed.push_back(pack_phase_weight<T>(wd + g * Cig * Cog * kHW, Cig, Cog, kHW, p.w_co_stride,
                                          p.w_tap_stride, taps, true));
    for (int64_t t = 0; t < kHW; ++t)
      for (int64_t ci = 0; ci < Cig; ++ci) offsets[g][t * Cig + ci] = shift[t] * Cin + g * Cig + ci;
  }

  implicit_rows(xp, P, N, G, Ho, Wp, Wo, Cin, K, offsets, packed, Cog, Cout, bd, yd, cl);
}

template <typename T>
void forward(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const auto hp = axis_phases(p.stride_h, p.pad_h, p.dil_h, p.kernel_h, p.out_h);
  const auto wp = axis_phases(p.stride_w, p.pad_w, p.dil_w, p.kernel_w, p.out_w);
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w, kHW = p.kernel_h * p.kernel_w;

  struct Phase {
    const AxisPhase* h;
    const AxisPhase* w;
    int64_t taps_h, taps_w, K, rows, tiles;
    std::vector<PackedMatrix<T>> packed;   // per group: NCHW A = Cog x K, NHWC B = K x Cog
  };
  std::vector<Phase> phases;
  bool tapless = false;
  for (const AxisPhase& ah : hp) {
    for (const AxisPhase& aw : wp) {
      Phase f{&ah, &aw, (int64_t)ah.k.size(), (int64_t)aw.k.size(), 0, 0, 0, {}};
      f.K = Cig * f.taps_h * f.taps_w;
      if (f.K == 0) {  // no tap reaches this phase (e.g. kernel 1, stride 2): bias only
        tapless = true;
        continue;
      }
      // GEMM row/column kk of the weight: NCHW kk = (ci, th, tw), NHWC kk = (th, tw, ci);
      // tap t = (th, tw) is kernel tap taps[t] of w[ci][co].
      std::vector<int64_t> taps(f.taps_h * f.taps_w);
      for (int64_t th = 0; th < f.taps_h; ++th)
        for (int64_t tw = 0; tw < f.taps_w; ++tw)
          taps[th * f.taps_w + tw] = ah.k[th] * p.kernel_w + aw.k[tw];
      for (int64_t g = 0; g < G; ++g)
        f.packed.push_back(pack_phase_weight<T>(wd + g * Cig * Cog * kHW, Cig, Cog, kHW,
                                                p.w_co_stride, p.w_tap_stride, taps, cl));
      phases.push_back(std::move(f));
    }
  }
  if (tapless) fill_bias(p, bd, yd, cl);
  if (phases.empty()) return;
  const int64_t nphases = phases.size();
  for (Phase& f : phases) {
    f.rows = rows_per_tile(p.batch * f.h->count, f.w->count, f.K, sizeof(T), G * nphases);
    f.tiles = ceil_div(p.batch * f.h->count, f.rows);
  }
  struct Task {
    int64_t phase, group, row0;
  };
  std::vector<Task> tasks;
  for (int64_t i = 0; i < nphases; ++i)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t t = 0; t < phases[i].tiles; ++t) tasks.push_back({i, g, t * phases[i].rows});
  const bool stride1 = p.stride_h == 1 && p.stride_w == 1;

  run_tasks((int64_t)tasks.size(), [&](int64_t ti) {
    const Task& tk = tasks[ti];
    const Phase& f = phases[tk.phase];
    const AxisPhase &ah = *f.h, &aw = *f.w;
    const int64_t g = tk.group, K = f.K, Jw = aw.count, count = ah.count;
    const int64_t rows = std::min(f.rows, p.batch * count - tk.row0), Jt = rows * Jw;
    T* col = cpu::thread_scratch<T, 0>(K * Jt);
    // Gather. Tile row r is phase row (n, jh) = divmod(row0 + r, count); output column jw of
    // tap (th, tw) reads x[n, jh + off_h, jw + off_w] (0 outside the input).
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = (tk.row0 + r) / count, jh = (tk.row0 + r) % count;
      for (int64_t th = 0; th < f.taps_h; ++th) {
        const int64_t ih = jh + ah.off[th];
        const bool row_in = ih >= 0 && ih < H;
        for (int64_t tw = 0; tw < f.taps_w; ++tw) {
          const int64_t offw = aw.off[tw];
          const int64_t lo = std::clamp<int64_t>(-offw, 0, Jw);
          const int64_t hi = row_in ? std::clamp<int64_t>(W - offw, lo, Jw) : lo;
          if (cl) {
            // col[(r, jw)][(th, tw, ci)]: a run of Cig channels per pixel.
            const int64_t kk = (th * f.taps_w + tw) * Cig;
            T* d = col + r * Jw * K + kk;
            const T* s = xd + ((n * H + ih) * W + offw) * Cin + g * Cig;
            for (int64_t jw = 0; jw < Jw; ++jw) {
              if (jw >= lo && jw < hi) {
                std::memcpy(d + jw * K, s + jw * Cin, Cig * sizeof(T));
              } else {
                std::fill(d + jw * K, d + jw * K + Cig, T(0));
              }
            }
          } else {
            for (int64_t ci = 0; ci < Cig; ++ci) {
              const int64_t kk = (ci * f.taps_h + th) * f.taps_w + tw;
              T* d = col + kk * Jt + r * Jw;
              std::fill(d, d + lo, T(0));
              if (hi > lo)
                std::memcpy(d + lo, xd + ((n * Cin + g * Cig + ci) * H + ih) * W + lo + offw,
                            (hi - lo) * sizeof(T));
              std::fill(d + hi, d + Jw, T(0));
            }
          }
        }
      }
    }
    const int64_t n0 = tk.row0 / count, n_last = (tk.row0 + rows - 1) / count;
    if (stride1 && n0 == n_last) {
      // The phase is the whole output and the tile whole rows of one image: GEMM into y.
      const int64_t oh0 = tk.row0 % count;
      if (cl) {
        T* c = yd + ((n0 * Ho + oh0) * Wo) * Cout + g * Cog;
        cpu::gemm<T>(MatrixView<T>(col, Jt, K, K), f.packed[g], c, Cout);
        if (bd)
          for (int64_t j = 0; j < Jt; ++j)
            for (int64_t co = 0; co < Cog; ++co) c[j * Cout + co] += bd[g * Cog + co];
      } else {
        T* c = yd + (n0 * Cout + g * Cog) * Ho * Wo + oh0 * Wo;
        cpu::gemm<T>(f.packed[g], MatrixView<T>(col, K, Jt, Jt), c, Ho * Wo);
        if (bd)
          for (int64_t co = 0; co < Cog; ++co) {
            const T b = bd[g * Cog + co];
            T* d = c + co * Ho * Wo;
            for (int64_t j = 0; j < Jt; ++j) d[j] += b;
          }
      }
      return;
    }
    T* out = cpu::thread_scratch<T, 1>(Cog * Jt);
    if (cl) {
      cpu::gemm<T>(MatrixView<T>(col, Jt, K, K), f.packed[g], out, Cog);
    } else {
      cpu::gemm<T>(f.packed[g], MatrixView<T>(col, K, Jt, Jt), out, Jt);
    }
    // Scatter the phase's outputs into their strided places.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = (tk.row0 + r) / count, jh = (tk.row0 + r) % count;
      const int64_t oh = ah.phase + p.stride_h * jh;
      if (cl) {
        for (int64_t jw = 0; jw < Jw; ++jw) {
          T* d = yd + ((n * Ho + oh) * Wo + aw.phase + p.stride_w * jw) * Cout + g * Cog;
          const T* s = out + (r * Jw + jw) * Cog;
          for (int64_t co = 0; co < Cog; ++co) d[co] = s[co] + (bd ? bd[g * Cog + co] : T(0));
        }
      } else {
        for (int64_t co = 0; co < Cog; ++co) {
          const T b = bd ? bd[g * Cog + co] : T(0);
          T* d = yd + ((n * Cout + g * Cog + co) * Ho + oh) * Wo + aw.phase;
          const T* s = out + co * Jt + r * Jw;
          for (int64_t jw = 0; jw < Jw; ++jw) d[jw * p.stride_w] = s[jw] + b;
        }
      }
    }
  });
}

// The backward of the implicit form (stride 1), on one zero-bordered pixel-major copy gyp of
// grad_output (Hq x Wq pixels per image, Hq = H + (kH - 1) dil_h): input pixel m = ih Wq + iw
// reads tap (kh, kw) at gyp pixel m + shift, shift = kh dil_h Wq + kw dil_w, so with
// K = (tap, co) and A(m, (tap, co)) = gyp[m + shift(tap)][co] read in place,
//   grad_input   C (m x ci) = A (m x K) * w (K x ci)         per image and block of rows
//   grad_weight  C (ci x K) = xq^T (ci x m) * A (m x K)      xq = x on the same Wq-wide grid,
// zero on the columns and rows past the input, so those grid pixels add nothing. grad_weight
// sums the pixels in fixed chunks in order (one GEMM each, accumulating): the same result for
// any thread count. No column matrix is built; the forms differ from backward() by rounding.
// Taken for channels_last when the pixels outnumber the input channels: measured (one thread,
// thread CPU time, DeconvNet's / pets-encdec's / U-Net-sized 3x3 layers) 5-10% faster than
// backward() there; in NCHW the two transposes it needs and, with few pixels, its weight-sized
// passes (packing w, reordering grad_weight) made it 10-90% slower.
bool use_implicit_backward(const Params& p) {
  return p.channels_last && p.stride_h == 1 && p.stride_w == 1 &&
         (p.kernel_w - 1) * p.dil_w <= p.in_w && p.batch * p.in_h * p.in_w >= p.in_per_group;
}

// Whether the channels_last backward orders its k index (tap, co), the order in which a
// channels_last weight stores each input channel's row: its column matrix then copies runs
// of channels (not one value per kernel tap), and grad_weight comes out channels_last, like
// the weight (and like torch's), with no reordering pass.
// (grad_weight_channels_last in conv_transpose.h is the same test on the tensors.)
bool tap_major(const Params& p) { return p.channels_last && p.w_co_stride == 1; }

// Pixels of one grad_weight GEMM (its packed operands stay a few MB).
constexpr int64_t kWeightPixels = 4096;

template <typename T>
void backward_implicit(const Params& p, const T* gyd, const T* xd, const T* wd, T* gxd, T* gwd,
                       bool cl) {
  const int64_t N = p.batch, G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kH = p.kernel_h, kW = p.kernel_w, kHW = kH * kW, K = Cog * kHW;
  const int64_t Hq = H + (kH - 1) * p.dil_h, Wq = W + (kW - 1) * p.dil_w, P = Hq * Wq;
  // grad_weight reads whole grids, so the furthest shift reaches (kH - 1) dil_h rows and
  // (kW - 1) dil_w pixels past the last image.
  const int64_t slack = (kH - 1) * p.dil_h * Wq + (kW - 1) * p.dil_w;
  T* gyp = cpu::thread_scratch<T, 4>((N * P + slack) * Cout);
  pixel_major_bordered(gyd, cl, N, Cout, Ho, Wo, Hq, Wq, p.pad_h, p.pad_w, slack, gyp);

  std::vector<int64_t> shift(kHW);
  for (int64_t kh = 0; kh < kH; ++kh)
    for (int64_t kw = 0; kw < kW; ++kw) shift[kh * kW + kw] = kh * p.dil_h * Wq + kw * p.dil_w;
  std::vector<std::vector<int64_t>> offsets(G, std::vector<int64_t>(K));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t t = 0; t < kHW; ++t)
      for (int64_t co = 0; co < Cog; ++co) offsets[g][t * Cog + co] = shift[t] * Cout + g * Cog + co;

  if (gxd) {
    // w_g as a K x Cig operand: element ((tap, co), ci) = w_g[ci][co][tap].
    std::vector<int64_t> w_rows(K);
    for (int64_t t = 0; t < kHW; ++t)
      for (int64_t co = 0; co < Cog; ++co) w_rows[t * Cog + co] = co * p.w_co_stride + t * p.w_tap_stride;
    std::vector<PackedMatrix<T>> packed;
    for (int64_t g = 0; g < G; ++g) {
      MatrixView<T> wv(wd + g * Cig * K, K, Cig, 0, K);
      wv.row_offsets = w_rows.data();
      packed.push_back(cpu::pack_b(wv));
    }
    implicit_rows(gyp, P, N, G, H, Wq, W, Cout, K, offsets, packed, Cig, Cin,
                  static_cast<const T*>(nullptr), gxd, cl);
  }

  if (gwd) {
    T* xq = cpu::thread_scratch<T, 5>(N * P * Cin);
    pixel_major_bordered(xd, cl, N, Cin, H, W, Hq, Wq, 0, 0, 0, xq);
    // K = (tap, co) is a channels_last grad_weight's own order: written in place then.
    const bool by_tap = tap_major(p);
    T* acc = by_tap ? nullptr : cpu::thread_scratch<T, 6>(Cig * K);
    const int64_t total = N * P;
    for (int64_t g = 0; g < G; ++g) {
      if (by_tap) acc = gwd + g * Cig * K;
      for (int64_t m0 = 0; m0 < total; m0 += kWeightPixels) {
        const int64_t len = std::min(kWeightPixels, total - m0);
        MatrixView<T> b(gyp + m0 * Cout, len, K, Cout);
        b.col_offsets = offsets[g].data();
        cpu::gemm<T>(MatrixView<T>(xq + m0 * Cin + g * Cig, Cig, len, 1, Cin), b, acc, K, m0 > 0);
      }
      if (by_tap) continue;
      // Into the weight's order: gw[g Cig + ci][co][tap] = acc[ci][(tap, co)].
      T* out = gwd + g * Cig * K;
      at::parallel_for(0, Cig, 16, [&](int64_t b0, int64_t e0) {
        for (int64_t ci = b0; ci < e0; ++ci)
          for (int64_t t = 0; t < kHW; ++t)
            for (int64_t co = 0; co < Cog; ++co) out[(ci * Cog + co) * kHW + t] = acc[ci * K + t * Cog + co];
      });
    }
  }
}

template <typename T>
void backward(const Params& p, const T* gyd, const T* xd, const T* wd, T* gxd, T* gwd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t H = p.in_h, W = p.in_w, Ho = p.out_h, Wo = p.out_w;
  const int64_t kH = p.kernel_h, kW = p.kernel_w, kHW = kH * kW, K = Cog * kHW;
  const bool need_gx = gxd != nullptr, need_gw = gwd != nullptr;

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
  // grad_input's GEMM operand per group, the weight as stored (w_g = Cig x K, K = (co, kh, kw)):
  // NCHW A = w_g, NHWC B = w_g^T. Both layouts order K the same way, so the weight is never
  // reordered (DeconvNet's fc6-deconv holds 411 MB).
  // NCHW reads w_g in place instead (the GEMM's row-major A) when the weight outnumbers the
  // pixels (DeconvNet's 512 channels at 8x8): packing it would cost Cig x K element moves, the
  // in-place form K x pixels (the GEMM then packs the column matrix instead).
  // (A channels_last weight is a gathered view here, always packed.)
  const bool weight_in_place = !cl && Cig >= p.batch * H * W && p.w_tap_stride == 1;
  // K = (tap, co) instead with a channels_last weight in channels_last (tap_major): the
  // weight's own order then too, and grad_weight is written channels_last.
  const bool by_tap = tap_major(p);
  const std::vector<int64_t> weight_offsets = co_tap_offsets(p);
  std::vector<PackedMatrix<T>> wpack;
  if (need_gx && !weight_in_place) {
    for (int64_t g = 0; g < G; ++g) {
      MatrixView<T> wg(wd + g * Cig * K, Cig, K, K);
      if (p.w_tap_stride != 1 && !by_tap) wg.col_offsets = weight_offsets.data();
      wpack.push_back(cl ? cpu::pack_b(wg.transposed()) : cpu::pack_a(wg));
    }
  }
  auto weight_a = [&](int64_t g) -> cpu::GemmOperand<T> {
    if (weight_in_place) return MatrixView<T>(wd + g * Cig * K, Cig, K, K);
    return wpack[g];
  };
  // Tiles of input rows. channels_last: any run of rows (pixels are contiguous across the
  // batch). NCHW: rows of one image, or whole images.
  const int64_t total_rows = p.batch * H;
  int64_t rows = rows_per_tile(total_rows, W, K, sizeof(T), 0);
  std::vector<std::pair<int64_t, int64_t>> tile_rows;  // (first global row, rows)
  if (cl) {
    for (int64_t r = 0; r < total_rows; r += rows) tile_rows.push_back({r, std::min(rows, total_rows - r)});
  } else if (rows >= H) {
    rows = rows / H * H;
    for (int64_t r = 0; r < total_rows; r += rows) tile_rows.push_back({r, std::min(rows, total_rows - r)});
  } else {
    for (int64_t n = 0; n < p.batch; ++n)
      for (int64_t r = 0; r < H; r += rows) tile_rows.push_back({n * H + r, std::min(rows, H - r)});
  }
  const int64_t tiles = tile_rows.size();
  const int64_t chunks = need_gw ? std::min(tiles, kWeightChunks) : tiles;
  // channels_last column rows (pixels x K) are an odd number of cache lines apart. The
  // im2col writes one tap of every pixel at a time, so with rows a multiple of 1-4 KB long
  // (FCN's 32x32 and 16x16 kernels: K of 3 x 1024 and 3 x 256) all its stores fell into a
  // few L1 sets and missed (the backward at 3-11x the NCHW one's time); an odd stride in
  // lines spreads consecutive pixels over all the sets.
  const int64_t line = 64 / int64_t(sizeof(T));
  const int64_t ldk = cl ? ((K + line - 1) / line | 1) * line : K;
  // One tile per group: its grad_weight GEMM writes gw itself (no partial sums, no reduction
  // pass over a weight-sized array). Otherwise each chunk's first tile initializes its
  // partial sum (no zero fill).
  const bool gw_direct = chunks == 1;
  std::vector<T, cpu::AlignedAllocator<T>> partial(need_gw && !gw_direct ? G * chunks * Cig * K : 0);

  run_tasks(G * chunks, [&](int64_t unit) {
    const int64_t g = unit / chunks, c = unit % chunks;
    const int64_t t0 = c * tiles / chunks, t1 = (c + 1) * tiles / chunks;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row0 = tile_rows[t].first, nrows = tile_rows[t].second, Jt = nrows * W;
      T* col = cpu::thread_scratch<T, 2>(ldk * Jt);
      // im2col of grad_output as seen by a conv2d(stride, padding, dilation): pixel (r, iw),
      // tap (co, kh, kw) holds gy[co, ih*s - pad + kh*d, iw*s - pad + kw*d].
      // Rows in parallel when the tasks do not already use every thread (FCN's upsampling
      // layers are a single task): plain copies to disjoint rows, so nothing depends on it.
      at::parallel_for(0, nrows, 1, [&](int64_t r_begin, int64_t r_end) {
        for (int64_t r = r_begin; r < r_end; ++r) {
          const int64_t n = (row0 + r) / H, ih = (row0 + r) % H;
          for (int64_t kh = 0; kh < kH; ++kh) {
            const int64_t oh = ih * p.stride_h - p.pad_h + kh * p.dil_h;
            const bool row_in = oh >= 0 && oh < Ho;
            for (int64_t kw = 0; kw < kW; ++kw) {
              const int64_t lo = lo_w[kw], hi = row_in ? hi_w[kw] : lo_w[kw];
              const int64_t base_w = kw * p.dil_w - p.pad_w;
              if (by_tap) {
                // The tap's Cog channels go to columns (kh, kw) * Cog.. of the pixel's row.
                T* d = col + r * W * ldk + (kh * kW + kw) * Cog;
                const T* s = gyd + ((n * Ho + oh) * Wo + base_w) * Cout + g * Cog;
                for (int64_t iw = 0; iw < W; ++iw) {
                  T* drow = d + iw * ldk;
                  if (iw >= lo && iw < hi) {
                    std::memcpy(drow, s + iw * p.stride_w * Cout, Cog * sizeof(T));
                  } else {
                    std::fill(drow, drow + Cog, T(0));
                  }
                }
              } else if (cl) {
                // Channel co of this tap goes to column co * kHW + (kh, kw) of the pixel's row.
                T* d = col + r * W * ldk + kh * kW + kw;
                const T* s = gyd + ((n * Ho + oh) * Wo + base_w) * Cout + g * Cog;
                for (int64_t iw = 0; iw < W; ++iw) {
                  T* drow = d + iw * ldk;
                  if (iw >= lo && iw < hi) {
                    const T* src = s + iw * p.stride_w * Cout;
                    for (int64_t co = 0; co < Cog; ++co) drow[co * kHW] = src[co];
                  } else {
                    for (int64_t co = 0; co < Cog; ++co) drow[co * kHW] = T(0);
                  }
                }
              } else {
                for (int64_t co = 0; co < Cog; ++co) {
                  T* d = col + ((co * kH + kh) * kW + kw) * Jt + r * W;
                  const T* s = gyd + ((n * Cout + g * Cog + co) * Ho + oh) * Wo + base_w;
                  std::fill(d, d + lo, T(0));
                  if (p.stride_w == 1) {
                    if (hi > lo) std::memcpy(d + lo, s + lo, (hi - lo) * sizeof(T));
                  } else {
                    for (int64_t iw = lo; iw < hi; ++iw) d[iw] = s[iw * p.stride_w];
                  }
                  std::fill(d + hi, d + W, T(0));
                }
              }
            }
          }
        }
      });
      const int64_t n0 = row0 / H, n_last = (row0 + nrows - 1) / H, ih0 = row0 % H;
      const bool one_image = n0 == n_last;
      if (need_gx) {
        if (cl) {
          cpu::gemm<T>(MatrixView<T>(col, Jt, K, ldk), wpack[g],
                       gxd + row0 * W * Cin + g * Cig, Cin);
        } else if (one_image) {
          cpu::gemm<T>(weight_a(g), MatrixView<T>(col, K, Jt, Jt),
                       gxd + ((n0 * Cin + g * Cig) * H + ih0) * W, H * W);
        } else {
          // Whole images (a tile only crosses images when it holds whole ones).
          T* tmp = cpu::thread_scratch<T, 3>(Cig * Jt);
          cpu::gemm<T>(weight_a(g), MatrixView<T>(col, K, Jt, Jt), tmp, Jt);
          for (int64_t n = n0; n <= n_last; ++n)
            for (int64_t ci = 0; ci < Cig; ++ci)
              std::memcpy(gxd + (n * Cin + g * Cig + ci) * H * W,
                          tmp + ci * Jt + (n - n0) * H * W, H * W * sizeof(T));
        }
      }
      if (need_gw) {
        T* acc = gw_direct ? gwd + g * Cig * K : partial.data() + unit * Cig * K;
        const bool accumulate = t > t0;
        if (cl) {
          // (Cig x Jt) = x^T of the tile's pixels, times col (Jt x K, K = (co, kh, kw)).
          cpu::gemm<T>(MatrixView<T>(xd + row0 * W * Cin + g * Cig, Cig, Jt, 1, Cin),
                       MatrixView<T>(col, Jt, K, ldk), acc, K, accumulate);
        } else {
          const T* xs;
          int64_t ld;
          if (one_image) {
            xs = xd + ((n0 * Cin + g * Cig) * H + ih0) * W;
            ld = H * W;
          } else {
            T* tmp = cpu::thread_scratch<T, 3>(Cig * Jt);
            for (int64_t n = n0; n <= n_last; ++n)
              for (int64_t ci = 0; ci < Cig; ++ci)
                std::memcpy(tmp + ci * Jt + (n - n0) * H * W,
                            xd + (n * Cin + g * Cig + ci) * H * W, H * W * sizeof(T));
            xs = tmp;
            ld = Jt;
          }
          if (gw_direct) {
            // Straight into gw: (Cig x K) = x (Cig x Jt, read in place) * col^T (one tile, so
            // packing its column matrix costs no more than the transposition it saves).
            cpu::gemm<T>(MatrixView<T>(xs, Cig, Jt, ld), MatrixView<T>(col, K, Jt, Jt).transposed(),
                         acc, K, false);
          } else {
            // Transposed, (K x Cig) += col (K x Jt) * x^T: the column matrix is read in place
            // as rows and only the smaller x is repacked (the sums are the same, pixel by
            // pixel); the reduction below transposes.
            cpu::gemm<T>(MatrixView<T>(col, K, Jt, Jt),
                         MatrixView<T>(xs, Cig, Jt, ld).transposed(), acc, Cig, accumulate);
          }
        }
      }
    }
  });
  if (need_gw && !gw_direct) {
    // Fixed-order reduction of the partial sums, into gw[g * Cig + ci][co][kh][kw] (the
    // weight's own order). channels_last partial sums are Cig x K like gw, NCHW ones K x Cig:
    // read in blocks of 16 channels x 256 taps so that the transposed reads stay in cache.
    const int64_t per = Cig * K;
    if (cl) {
      at::parallel_for(0, G * per, 4096, [&](int64_t b, int64_t e) {
        const int64_t g0 = b / per, g1 = (e - 1) / per;
        for (int64_t g = g0; g <= g1; ++g) {
          const T* part = partial.data() + g * chunks * per;
          const int64_t lo = std::max(b, g * per) - g * per, hi = std::min(e, (g + 1) * per) - g * per;
          T* out = gwd + g * per;
          for (int64_t j = lo; j < hi; ++j) out[j] = part[j];
          for (int64_t c = 1; c < chunks; ++c)
            for (int64_t j = lo; j < hi; ++j) out[j] += part[c * per + j];
        }
      });
    } else {
      constexpr int64_t kCiBlock = 16, kKBlock = 256;
      const int64_t ci_blocks = ceil_div(Cig, kCiBlock);
      at::parallel_for(0, G * ci_blocks, 1, [&](int64_t b, int64_t e) {
        for (int64_t blk = b; blk < e; ++blk) {
          const int64_t g = blk / ci_blocks, ci0 = (blk % ci_blocks) * kCiBlock;
          const int64_t ci1 = std::min(Cig, ci0 + kCiBlock);
          const T* part = partial.data() + g * chunks * per;
          T* out = gwd + g * per;
          for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
            const int64_t k1 = std::min(K, k0 + kKBlock);
            for (int64_t ci = ci0; ci < ci1; ++ci) {
              for (int64_t k = k0; k < k1; ++k) {
                T s = part[k * Cig + ci];
                for (int64_t c = 1; c < chunks; ++c) s += part[c * per + k * Cig + ci];
                out[ci * K + k] = s;
              }
            }
          }
        }
      });
    }
  }
}

template <typename T>
void bias_grad(const Params& p, const T* g, T* out, bool cl) {
  cpu::channel_sums(g, p.batch, p.out_channels, p.out_h * p.out_w, cl, out);
}

// Half / BFloat16 run in float32; one rounding at the end.
at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

at::MemoryFormat layout(const Params& p) {
  return p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// A 4-D tensor in the layout the kernels use for p, in the compute type.
at::Tensor prepared(const at::Tensor& t, const Params& p, at::ScalarType ctype) {
  return (t.dim() == 3 ? t.unsqueeze(0) : t).to(ctype).contiguous(layout(p));
}

// The weight in the compute type, read as stored when it is contiguous or channels_last (a
// model moved to channels_last has channels_last weights, and copying DeconvNet's 411 MB
// fc6-deconv weight took longer than the layer); records its strides in p. The same test as
// the fake kernel's (pyseg/ops/conv_transpose.py), which decides grad_weight's layout.
at::Tensor weight_as_stored(const at::Tensor& weight, at::ScalarType ctype, Params& p) {
  // Decided on `weight` itself, not on its conversion: converting a strided channels_last
  // view (a bfloat16 slice) yields a dense channels_last copy, and grad_weight's layout
  // (grad_weight_channels_last) follows the tensor the caller passed.
  const bool cl = weight.dim() == 4 && weight.is_contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor w = weight.to(ctype).contiguous(cl ? at::MemoryFormat::ChannelsLast
                                                : at::MemoryFormat::Contiguous);
  p.w_co_stride = cl ? 1 : p.kernel_h * p.kernel_w;
  p.w_tap_stride = cl ? p.out_per_group : 1;
  return w;
}

at::Tensor conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef output_padding,
                                int64_t groups, at::IntArrayRef dilation) {
  Params p = check_forward(input, weight, bias, stride, padding, output_padding, groups, dilation);
  const auto dtype = input.scalar_type(), ctype = compute_type(dtype);
  at::Tensor x = prepared(input, p, ctype);
  at::Tensor w = weight_as_stored(weight, ctype, p);
  at::Tensor b = bias.has_value() && bias->defined() ? bias->to(ctype).contiguous() : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out_h, p.out_w}, x.options(), layout(p));
  if (y.numel() > 0) {
    if (x.numel() == 0 || w.numel() == 0) {
      y.zero_();
      if (b.defined()) y.add_(b.view({1, -1, 1, 1}));
    } else {
      const bool disjoint = taps_are_disjoint(p), scatter = !disjoint && use_scatter_form(p);
      const bool implicit = !disjoint && !scatter && use_implicit_form(p);
      AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d", [&] {
        auto* form = disjoint   ? forward_disjoint<scalar_t>
                     : scatter  ? forward_scatter<scalar_t>
                     : implicit ? forward_implicit<scalar_t>
                                : forward<scalar_t>;
        form(p, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                          b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                          y.data_ptr<scalar_t>(), p.channels_last);
      });
    }
  }
  return finish(y.to(dtype), p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_transpose2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
    int64_t groups, at::IntArrayRef dilation, std::array<bool, 3> output_mask) {
  Params p = check_backward(grad_output, input, weight, stride, padding, output_padding,
                            groups, dilation);
  const auto dtype = input.scalar_type(), ctype = compute_type(dtype);
  at::Tensor gy = prepared(grad_output, p, ctype);
  at::Tensor x = prepared(input, p, ctype);
  at::Tensor w = weight_as_stored(weight, ctype, p);
  const auto opts = x.options();
  at::Tensor gx, gw, gb;
  const bool work = gy.numel() > 0 && x.numel() > 0 && w.numel() > 0;
  // With work, the GEMMs write every element of grad_input and grad_weight (no zero fill).
  if (output_mask[0]) {
    gx = at::empty({p.batch, p.in_channels, p.in_h, p.in_w}, opts, layout(p));
    if (!work) gx.zero_();
  }
  if (output_mask[1]) {
    const auto gw_opts = opts.memory_format(grad_weight_channels_last(p, weight)
                                                ? at::MemoryFormat::ChannelsLast
                                                : at::MemoryFormat::Contiguous);
    gw = work ? at::empty(p.weight_sizes(), gw_opts) : at::zeros(p.weight_sizes(), gw_opts);
  }
  if (output_mask[2]) gb = at::zeros({p.out_channels}, opts);
  if (work && (gx.defined() || gw.defined())) {
    AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d_backward", [&] {
      auto* form = use_implicit_backward(p) ? backward_implicit<scalar_t> : backward<scalar_t>;
      form(p, gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                         w.const_data_ptr<scalar_t>(),
                         gx.defined() ? gx.data_ptr<scalar_t>() : nullptr,
                         gw.defined() ? gw.data_ptr<scalar_t>() : nullptr, p.channels_last);
    });
  }
  if (gb.defined() && gy.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(ctype, "conv_transpose2d_backward_bias", [&] {
      bias_grad<scalar_t>(p, gy.const_data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(),
                          p.channels_last);
    });
  }
  const auto out_opts = input.options();
  return {gx.defined() ? finish(gx.to(dtype), p) : at::empty({0}, out_opts),
          gw.defined() ? gw.to(dtype) : at::empty({0}, out_opts),
          gb.defined() ? gb.to(dtype) : at::empty({0}, out_opts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cpu);
  m.impl("conv_transpose2d_backward", &conv_transpose2d_backward_cpu);
}

}  // namespace pyseg::conv_transpose
