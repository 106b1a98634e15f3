// conv_transpose3d CPU kernels, on pyseg's packed GEMM (common/gemm.h). The design is
// conv_transpose2d's (csrc/ops/conv_transpose/conv_transpose_cpu.cpp) on three axes.
//
// Forward, phase form: output index o along an axis receives input index i through tap k iff
// o + pad = i * stride + k * dilation, so the outputs with o = ph (mod stride) (one "phase")
// read a fixed set of taps at fixed offsets: i = j + off(k), o = ph + stride * j. Per phase
// (pd, ph, pw) the transposed conv is an ordinary correlation: gather the phase's taps of the
// input into a column matrix, one GEMM against the phase's weight (packed once per call), and
// write the result into the strided output. Every output element is written exactly once.
//
// Forward, disjoint form: when every output reads at most one tap per axis
// ((kernel - 1) * dilation < stride: the U-Net's 2x2x2 stride-2 layers) all taps read the same
// input, so the layer is one GEMM of the input (read in place) with the weight, whose result
// values are copied to their outputs.
//
// Inputs much smaller than the kernel's reach take the scatter form (forward_scatter): one GEMM
// into columns and a fixed-order col2vol gather (conv_transpose3d_index.h).
//
// Backward: grad_input is an ordinary conv3d of grad_output with the same weight (vol2col of
// grad_output per tile + GEMM); grad_weight is the correlation of the input with that same
// column matrix, summed over the tiles in a fixed number of chunks (kWeightChunks; the tiles do
// not depend on the thread count) and reduced in a fixed order. grad_bias sums grad_output
// per channel in double.
//
// Layouts: NCDHW and channels_last_3d are each computed in their own layout: in NCDHW a column
// matrix is (channels x taps) x voxels and the GEMM weight x columns; in channels_last_3d it is
// voxels x (taps x channels) and the GEMM columns x weight, written straight into NDHWC rows.
//
// Tiles: a task is a range of rows (n, d, h) of W voxels, sized so that its column matrix takes
// about half the L2 but holds at least kMinColumns voxels, split further until every thread has
// work; with fewer tasks than threads each GEMM is parallel inside (at::parallel_for).
// Deterministic: every sum has a fixed order (the GEMM's, and the fixed chunks above).
// Half and bfloat16 are computed in float32 (conv_transpose3d.h) and rounded once at the end.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "common/channel_sums.h"
#include "common/cpu_capability.h"
#include "common/gemm.h"
#include "common/scratch.h"
#include "common/tiles.h"
#include "ops/conv_transpose3d/conv_transpose3d.h"

namespace pyseg::conv_transpose3d {
namespace {

using cpu::AxisPhase;
using cpu::axis_phases;
using cpu::ceil_div;
using cpu::kWeightChunks;
using cpu::MatrixView;
using cpu::PackedMatrix;
using cpu::rows_per_tile;
using cpu::run_tasks;

// Copy and zero-fill of n values. The runs here are short (a row of a volume, a voxel's
// channels: 8 to 64 values), for which a call to memcpy / memset costs about as much as the
// work. Plain loops, so that the compiler may inline them; GCC -O3 still turns some of them
// (the NCDHW vol2col's) back into library calls, `omp simd` notwithstanding (RESULTS.md,
// "conv_transpose3d CPU").
template <typename T>
inline void copy_run(T* __restrict__ d, const T* __restrict__ s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = s[i];
}

template <typename T>
inline void zero_run(T* d, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = T(0);
}

// For each tap k along one axis, the input indices [lo, hi) whose output index
// i * stride - pad + k * dilation falls inside [0, out).
struct AxisReach {
  std::vector<int64_t> lo, hi;
  int64_t reached = 0;  // sum of hi - lo: the outputs reached when the taps are disjoint
};

AxisReach axis_reach(int64_t stride, int64_t pad, int64_t dil, int64_t kernel, int64_t in,
                     int64_t out) {
  AxisReach r{std::vector<int64_t>(kernel), std::vector<int64_t>(kernel), 0};
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t base = k * dil - pad;  // o = i * stride + base
    const int64_t lim = out - 1 - base;
    const int64_t hi = std::min(in, lim < 0 ? 0 : lim / stride + 1);
    const int64_t lo = std::min(base >= 0 ? 0 : (-base + stride - 1) / stride, hi);
    r.lo[k] = lo;
    r.hi[k] = hi;
    r.reached += hi - lo;
  }
  return r;
}

// Tiles of `rows` input rows (n, id, ih) as (first global row, rows): channels_last_3d any run
// of rows (voxels are contiguous across the batch), NCDHW rows of one image.
std::vector<std::pair<int64_t, int64_t>> row_tiles(const Params& p, int64_t rows, bool cl) {
  const int64_t per_image = p.in[0] * p.in[1], total = p.batch * per_image;
  std::vector<std::pair<int64_t, int64_t>> tiles;
  if (cl) {
    for (int64_t r = 0; r < total; r += rows) tiles.push_back({r, std::min(rows, total - r)});
  } else {
    for (int64_t n = 0; n < p.batch; ++n)
      for (int64_t r = 0; r < per_image; r += rows)
        tiles.push_back({n * per_image + r, std::min(rows, per_image - r)});
  }
  return tiles;
}

// y = bias (or 0) everywhere, for layers with outputs that no tap reaches.
template <typename T>
void fill_bias(const Params& p, const T* bd, T* yd, bool cl) {
  const int64_t vol = p.out_volume(), C = p.out_channels;
  at::parallel_for(0, p.batch * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T v = bd ? bd[i % C] : T(0);
      if (cl) {
        T* d = yd + (i / C) * vol * C + i % C;
        for (int64_t j = 0; j < vol; ++j) d[j * C] = v;
      } else {
        std::fill(yd + i * vol, yd + (i + 1) * vol, v);
      }
    }
  });
}

// The phase weight of one group as a packed GEMM operand: output channel co is the edge index,
// the k index is kk = (ci, t) in NCDHW (A = Cog x K) or (t, ci) in channels_last_3d
// (B = K x Cog), tap t being kernel tap taps[t] of w_g[ci][co]. Filled through the packed
// layout's own addressing (edge_offset / k_stride), one panel per task.
template <typename T>
PackedMatrix<T> pack_phase_weight(const T* wg, int64_t Cig, int64_t Cog, int64_t kvol,
                                  const std::vector<int64_t>& taps, bool cl) {
  const int64_t ntaps = taps.size(), K = Cig * ntaps;
  PackedMatrix<T> packed = cl ? cpu::packed_zeros<T>(K, Cog, false) : cpu::packed_zeros<T>(Cog, K, true);
  T* out = packed.data.data();
  const int64_t ks = packed.k_stride();
  at::parallel_for(0, Cog, 8, [&](int64_t begin, int64_t end) {
    for (int64_t co = begin; co < end; ++co) {
      T* d = out + packed.edge_offset(co);
      for (int64_t ci = 0; ci < Cig; ++ci) {
        const T* s = wg + (ci * Cog + co) * kvol;
        for (int64_t t = 0; t < ntaps; ++t) {
          const int64_t kk = cl ? t * Cig + ci : ci * ntaps + t;
          d[kk * ks] = s[taps[t]];
        }
      }
    }
  });
  return packed;
}

// Multiply-adds of the phase form (taps gathered per phase, including those outside the
// input) and of the scatter form (every input voxel times every tap), per channel pair.
double phase_macs(const Params& p) {
  double macs = 1;
  for (int d = 0; d < 3; ++d) {
    double axis = 0;
    for (const AxisPhase& a : axis_phases(p.stride[d], p.pad[d], p.dil[d], p.kernel[d], p.out[d]))
      axis += double(a.count) * a.k.size();
    macs *= axis;
  }
  return macs;
}

double scatter_macs(const Params& p) { return double(p.in_volume()) * p.kernel_volume(); }

// The scatter form (inputs much smaller than the kernel's reach, where a phase would mostly
// gather zeros), as long as one image's columns stay within 2^26 elements.
bool use_scatter_form(const Params& p) {
  const double scatter = scatter_macs(p);
  return scatter * p.out_per_group <= double(1 << 26) && phase_macs(p) > 4 * scatter;
}

// Whether every output reads at most one tap per axis, with some stride above 1.
bool taps_are_disjoint(const Params& p) {
  bool disjoint = true, strided = false;
  for (int d = 0; d < 3; ++d) {
    disjoint &= (p.kernel[d] - 1) * p.dil[d] < p.stride[d];
    strided |= p.stride[d] > 1;
  }
  return disjoint && strided;
}

// The scatter form, NCDHW: per image and group cols = W_g^T X_g ((co, tap) x voxels), then
// each output sums its taps in a fixed order (col2vol_sum).
template <typename T>
void forward_scatter(const Params& p, const T* x, const T* w, const T* b, T* y) {
  const Geometry<> g = p.geometry();
  const int64_t in_vol = p.in_volume(), out_vol = p.out_volume(), kvol = p.kernel_volume();
  const int64_t ipg = p.in_per_group, opg = p.out_per_group, rows = opg * kvol;
  std::vector<T> cols(rows * in_vol);
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      const T* wg = w + grp * ipg * rows;
      const T* xg = x + (n * p.in_channels + grp * ipg) * in_vol;
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

// The disjoint form, per tile of input rows and group:
//     cols = x_tile (voxels x ci) * B (ci x (tap, co))     channels_last_3d, or
//     cols = A ((co, tap) x ci) * x_tile (ci x voxels)     NCDHW (rows of one image),
// x read in place; then every column value goes (plus the bias) to the one output it belongs
// to. Outputs no tap reaches (stride > kernel) hold the bias.
template <typename T>
void forward_disjoint(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t D = p.in[0], H = p.in[1], W = p.in[2], Do = p.out[0], Ho = p.out[1], Wo = p.out[2];
  const int64_t kD = p.kernel[0], kH = p.kernel[1], kW = p.kernel[2], kvol = p.kernel_volume();
  const int64_t N = kvol * Cog, in_vol = p.in_volume(), out_vol = p.out_volume();
  std::array<AxisReach, 3> reach;
  bool covers_all = true;
  for (int d = 0; d < 3; ++d) {
    reach[d] = axis_reach(p.stride[d], p.pad[d], p.dil[d], p.kernel[d], p.in[d], p.out[d]);
    covers_all &= reach[d].reached == p.out[d];
  }
  if (!covers_all) fill_bias(p, bd, yd, cl);
  std::vector<PackedMatrix<T>> wpack;
  // channels_last_3d: B = ci x (tap, co) per group, each tap's channels contiguous as in y (a
  // small reordered copy, kept alive: under PYSEG_GEMM=aten the GEMM reads it as the source).
  std::vector<T> reordered(cl ? G * Cig * N : 0);
  for (int64_t g = 0; g < G; ++g) {
    const T* wg = wd + g * Cig * N;  // Cig x (co, tap)
    if (cl) {
      T* b = reordered.data() + g * Cig * N;
      for (int64_t ci = 0; ci < Cig; ++ci)
        for (int64_t co = 0; co < Cog; ++co)
          for (int64_t t = 0; t < kvol; ++t) b[(ci * kvol + t) * Cog + co] = wg[(ci * Cog + co) * kvol + t];
      wpack.push_back(cpu::pack_b(MatrixView<T>(b, Cig, N, N)));
    } else {
      wpack.push_back(cpu::pack_a(MatrixView<T>(wg, Cig, N, N).transposed()));
    }
  }
  const int64_t total_rows = p.batch * D * H;
  const auto tiles =
      row_tiles(p, rows_per_tile(cl ? total_rows : D * H, W, Cig + N, sizeof(T), G), cl);
  const int64_t ntiles = tiles.size();
  const AxisReach &rd = reach[0], &rh = reach[1], &rw = reach[2];
  run_tasks(ntiles * G, [&](int64_t task) {
    const int64_t g = task / ntiles, row0 = tiles[task % ntiles].first;
    const int64_t nrows = tiles[task % ntiles].second, Jt = nrows * W;
    T* cols = cpu::thread_scratch<T, 1>(N * Jt);
    if (cl) {
      cpu::gemm<T>(MatrixView<T>(xd + row0 * W * Cin + g * Cig, Jt, Cig, Cin), wpack[g], cols, N);
    } else {
      const int64_t n = row0 / (D * H), r0 = row0 % (D * H);
      cpu::gemm<T>(wpack[g], MatrixView<T>(xd + (n * Cin + g * Cig) * in_vol + r0 * W, Cig, Jt, in_vol),
                   cols, Jt);
    }
    for (int64_t r = 0; r < nrows; ++r) {
      const int64_t q = row0 + r, n = q / (D * H), id = (q / H) % D, ih = q % H;
      for (int64_t kd = 0; kd < kD; ++kd) {
        if (id < rd.lo[kd] || id >= rd.hi[kd]) continue;
        const int64_t od = id * p.stride[0] - p.pad[0] + kd * p.dil[0];
        for (int64_t kh = 0; kh < kH; ++kh) {
          if (ih < rh.lo[kh] || ih >= rh.hi[kh]) continue;
          const int64_t oh = ih * p.stride[1] - p.pad[1] + kh * p.dil[1];
          for (int64_t kw = 0; kw < kW; ++kw) {
            const int64_t t = (kd * kH + kh) * kW + kw, base = kw * p.dil[2] - p.pad[2];
            if (cl) {
              T* yrow = yd + ((n * Do + od) * Ho + oh) * Wo * Cout + g * Cog;
              for (int64_t iw = rw.lo[kw]; iw < rw.hi[kw]; ++iw) {
                const T* s = cols + (r * W + iw) * N + t * Cog;
                T* d = yrow + (iw * p.stride[2] + base) * Cout;
                if (bd) {
                  for (int64_t co = 0; co < Cog; ++co) d[co] = s[co] + bd[g * Cog + co];
                } else {
                  copy_run(d, s, Cog);
                }
              }
            } else {
              for (int64_t co = 0; co < Cog; ++co) {
                const T b = bd ? bd[g * Cog + co] : T(0);
                const T* s = cols + (co * kvol + t) * Jt + r * W;
                T* yrow = yd + (n * Cout + g * Cog + co) * out_vol + (od * Ho + oh) * Wo + base;
                for (int64_t iw = rw.lo[kw]; iw < rw.hi[kw]; ++iw) yrow[iw * p.stride[2]] = s[iw] + b;
              }
            }
          }
        }
      }
    }
  });
}

// The phase form (header comment).
template <typename T>
void forward_phases(const Params& p, const T* xd, const T* wd, const T* bd, T* yd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t D = p.in[0], H = p.in[1], W = p.in[2], Do = p.out[0], Ho = p.out[1], Wo = p.out[2];
  const int64_t kvol = p.kernel_volume(), in_vol = p.in_volume(), out_vol = p.out_volume();
  std::array<std::vector<AxisPhase>, 3> ax;
  for (int d = 0; d < 3; ++d)
    ax[d] = axis_phases(p.stride[d], p.pad[d], p.dil[d], p.kernel[d], p.out[d]);

  struct Phase {
    const AxisPhase *d, *h, *w;
    int64_t td, th, tw, K, rows = 0, tiles = 0;
    std::vector<PackedMatrix<T>> packed;  // per group: NCDHW A = Cog x K, NDHWC B = K x Cog
  };
  std::vector<Phase> phases;
  bool tapless = false;
  for (const AxisPhase& ad : ax[0])
    for (const AxisPhase& ah : ax[1])
      for (const AxisPhase& aw : ax[2]) {
        Phase f{&ad, &ah, &aw, (int64_t)ad.k.size(), (int64_t)ah.k.size(), (int64_t)aw.k.size(), 0};
        f.K = Cig * f.td * f.th * f.tw;
        if (f.K == 0) {  // no tap reaches this phase (e.g. kernel 1, stride 2): bias only
          tapless = true;
          continue;
        }
        // Tap t = (td, th, tw) is kernel tap taps[t] of w[ci][co].
        std::vector<int64_t> taps;
        for (int64_t kd : ad.k)
          for (int64_t kh : ah.k)
            for (int64_t kw : aw.k) taps.push_back((kd * p.kernel[1] + kh) * p.kernel[2] + kw);
        for (int64_t g = 0; g < G; ++g)
          f.packed.push_back(pack_phase_weight<T>(wd + g * Cig * Cog * kvol, Cig, Cog, kvol, taps, cl));
        phases.push_back(std::move(f));
      }
  if (tapless) fill_bias(p, bd, yd, cl);
  if (phases.empty()) return;
  const int64_t nphases = phases.size();
  for (Phase& f : phases) {
    const int64_t total_rows = p.batch * f.d->count * f.h->count;
    f.rows = rows_per_tile(total_rows, f.w->count, f.K, sizeof(T), G * nphases);
    f.tiles = ceil_div(total_rows, f.rows);
  }
  struct Task {
    int64_t phase, group, row0;
  };
  std::vector<Task> tasks;
  for (int64_t i = 0; i < nphases; ++i)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t t = 0; t < phases[i].tiles; ++t) tasks.push_back({i, g, t * phases[i].rows});
  const bool stride1 = p.stride[0] == 1 && p.stride[1] == 1 && p.stride[2] == 1;

  run_tasks((int64_t)tasks.size(), [&](int64_t ti) {
    const Task& tk = tasks[ti];
    const Phase& f = phases[tk.phase];
    const AxisPhase &ad = *f.d, &ah = *f.h, &aw = *f.w;
    const int64_t g = tk.group, K = f.K, Jw = aw.count, plane = ad.count * ah.count;
    const int64_t rows = std::min(f.rows, p.batch * plane - tk.row0), Jt = rows * Jw;
    const int64_t ntaps = f.td * f.th * f.tw;
    T* col = cpu::thread_scratch<T, 0>(K * Jt);
    // Gather. Tile row r is phase row (n, jd, jh); output column jw of tap (td, th, tw) reads
    // x[n, jd + off_d, jh + off_h, jw + off_w] (0 outside the input).
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t q = tk.row0 + r, n = q / plane, jd = (q / ah.count) % ad.count, jh = q % ah.count;
      for (int64_t td = 0; td < f.td; ++td) {
        const int64_t id = jd + ad.off[td];
        for (int64_t th = 0; th < f.th; ++th) {
          const int64_t ih = jh + ah.off[th];
          const bool row_in = id >= 0 && id < D && ih >= 0 && ih < H;
          for (int64_t tw = 0; tw < f.tw; ++tw) {
            const int64_t t = (td * f.th + th) * f.tw + tw, offw = aw.off[tw];
            const int64_t lo = std::clamp<int64_t>(-offw, 0, Jw);
            const int64_t hi = row_in ? std::clamp<int64_t>(W - offw, lo, Jw) : lo;
            if (cl) {
              // col[(r, jw)][(t, ci)]: a run of Cig channels per voxel.
              T* d = col + r * Jw * K + t * Cig;
              for (int64_t jw = 0; jw < lo; ++jw) zero_run(d + jw * K, Cig);
              if (hi > lo) {
                const T* s = xd + (((n * D + id) * H + ih) * W + offw) * Cin + g * Cig;
                for (int64_t jw = lo; jw < hi; ++jw) copy_run(d + jw * K, s + jw * Cin, Cig);
              }
              for (int64_t jw = hi; jw < Jw; ++jw) zero_run(d + jw * K, Cig);
            } else {
              for (int64_t ci = 0; ci < Cig; ++ci) {
                T* d = col + (ci * ntaps + t) * Jt + r * Jw;
                zero_run(d, lo);
                if (hi > lo)
                  copy_run(d + lo, xd + (n * Cin + g * Cig + ci) * in_vol + (id * H + ih) * W + lo + offw,
                           hi - lo);
                zero_run(d + hi, Jw - hi);
              }
            }
          }
        }
      }
    }
    const int64_t n0 = tk.row0 / plane, n_last = (tk.row0 + rows - 1) / plane;
    if (stride1 && n0 == n_last) {
      // The phase is the whole output and the tile whole rows of one image: GEMM into y.
      const int64_t r0 = tk.row0 % plane;
      if (cl) {
        T* c = yd + (n0 * out_vol + r0 * Wo) * Cout + g * Cog;
        cpu::gemm<T>(MatrixView<T>(col, Jt, K, K), f.packed[g], c, Cout);
        if (bd)
          for (int64_t j = 0; j < Jt; ++j)
            for (int64_t co = 0; co < Cog; ++co) c[j * Cout + co] += bd[g * Cog + co];
      } else {
        T* c = yd + (n0 * Cout + g * Cog) * out_vol + r0 * Wo;
        cpu::gemm<T>(f.packed[g], MatrixView<T>(col, K, Jt, Jt), c, out_vol);
        if (bd)
          for (int64_t co = 0; co < Cog; ++co) {
            const T b = bd[g * Cog + co];
            T* d = c + co * out_vol;
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
      const int64_t q = tk.row0 + r, n = q / plane, jd = (q / ah.count) % ad.count, jh = q % ah.count;
      const int64_t od = ad.phase + p.stride[0] * jd, oh = ah.phase + p.stride[1] * jh;
      if (cl) {
        T* yrow = yd + ((n * Do + od) * Ho + oh) * Wo * Cout + g * Cog;
        for (int64_t jw = 0; jw < Jw; ++jw) {
          T* d = yrow + (aw.phase + p.stride[2] * jw) * Cout;
          const T* s = out + (r * Jw + jw) * Cog;
          if (bd) {
            const T* b = bd + g * Cog;
            for (int64_t co = 0; co < Cog; ++co) d[co] = s[co] + b[co];
          } else {
            copy_run(d, s, Cog);
          }
        }
      } else {
        for (int64_t co = 0; co < Cog; ++co) {
          const T b = bd ? bd[g * Cog + co] : T(0);
          T* d = yd + (n * Cout + g * Cog + co) * out_vol + (od * Ho + oh) * Wo + aw.phase;
          const T* s = out + co * Jt + r * Jw;
          for (int64_t jw = 0; jw < Jw; ++jw) d[jw * p.stride[2]] = s[jw] + b;
        }
      }
    }
  });
}

// grad_input and grad_weight (header comment). The column index k: in NCDHW (co, tap), the
// weight's own order (its GEMMs use the weight as stored); in channels_last_3d (tap, co), so
// that the gather copies runs of Cog channels (the small weight is reordered to match, and
// grad_weight is put back in the weight's order by the final reduction).
template <typename T>
void backward(const Params& p, const T* gyd, const T* xd, const T* wd, T* gxd, T* gwd, bool cl) {
  const int64_t G = p.groups, Cin = p.in_channels, Cout = p.out_channels;
  const int64_t Cig = p.in_per_group, Cog = p.out_per_group;
  const int64_t D = p.in[0], H = p.in[1], W = p.in[2], Do = p.out[0], Ho = p.out[1], Wo = p.out[2];
  const int64_t kD = p.kernel[0], kH = p.kernel[1], kW = p.kernel[2], kvol = p.kernel_volume();
  const int64_t K = Cog * kvol, in_vol = p.in_volume();
  const bool need_gx = gxd != nullptr, need_gw = gwd != nullptr;
  // For tap kw, the input columns iw whose output column iw * s - pad + kw * d is in range.
  const AxisReach rw = axis_reach(p.stride[2], p.pad[2], p.dil[2], kW, W, Wo);
  // grad_input's weight operand per group (w_g = Cig x K): NCDHW A = w_g, read in place when
  // it outnumbers the voxels (packing it would cost more than the GEMM packing the columns);
  // NDHWC B = w_g^T with k = (tap, co), from a reordered copy (kept alive: under
  // PYSEG_GEMM=aten the GEMM reads it as the source).
  const bool weight_in_place = !cl && Cig >= p.batch * in_vol;
  std::vector<PackedMatrix<T>> wpack;
  std::vector<T> reordered(need_gx && cl ? G * Cig * K : 0);
  if (need_gx && !weight_in_place) {
    for (int64_t g = 0; g < G; ++g) {
      const T* wg = wd + g * Cig * K;
      if (cl) {
        T* r = reordered.data() + g * Cig * K;
        for (int64_t ci = 0; ci < Cig; ++ci)
          for (int64_t co = 0; co < Cog; ++co)
            for (int64_t t = 0; t < kvol; ++t) r[(ci * kvol + t) * Cog + co] = wg[(ci * Cog + co) * kvol + t];
        wpack.push_back(cpu::pack_b(MatrixView<T>(r, Cig, K, K).transposed()));
      } else {
        wpack.push_back(cpu::pack_a(MatrixView<T>(wg, Cig, K, K)));
      }
    }
  }
  auto weight_a = [&](int64_t g) -> cpu::GemmOperand<T> {
    if (weight_in_place) return MatrixView<T>(wd + g * Cig * K, Cig, K, K);
    return wpack[g];
  };
  // Tiles of input rows (n, id, ih), independent of the thread count: channels_last_3d any run
  // of rows, NCDHW rows of one image (read and written in place).
  const int64_t total_rows = p.batch * D * H;
  const auto tile_rows = row_tiles(p, rows_per_tile(cl ? total_rows : D * H, W, K, sizeof(T), 0), cl);
  const int64_t tiles = tile_rows.size();
  const int64_t chunks = need_gw ? std::min(tiles, kWeightChunks) : tiles;
  // NCDHW with stride_w > 1: grad_output split once into its W phases (ow = ph + s * j stored
  // at [row][ph][j]), so that each tap row of the column matrix is a contiguous copy instead
  // of a strided gather (the columns hold kernel-volume times more values than grad_output).
  const int64_t sw = p.stride[2], Wq = ceil_div(Wo, sw), rows_out = p.batch * Cout * Do * Ho;
  T* split = nullptr;
  if (!cl && sw > 1) {
    split = cpu::thread_scratch<T, 4>(rows_out * sw * Wq);
    at::parallel_for(0, rows_out, 64, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        const T* s = gyd + row * Wo;
        T* d = split + row * sw * Wq;
        for (int64_t ph = 0; ph < sw; ++ph)
          for (int64_t j = 0, ow = ph; ow < Wo; ++j, ow += sw) d[ph * Wq + j] = s[ow];
      }
    });
  }
  // Each chunk's grad_weight partial sum; its first tile initializes it (no zero fill).
  std::vector<T, cpu::AlignedAllocator<T>> partial(need_gw ? G * chunks * Cig * K : 0);

  run_tasks(G * chunks, [&](int64_t unit) {
    const int64_t g = unit / chunks, c = unit % chunks;
    const int64_t t0 = c * tiles / chunks, t1 = (c + 1) * tiles / chunks;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row0 = tile_rows[t].first, nrows = tile_rows[t].second, Jt = nrows * W;
      T* col = cpu::thread_scratch<T, 2>(K * Jt);
      // vol2col of grad_output as a conv3d(stride, padding, dilation) sees it: voxel (r, iw),
      // tap (co, kd, kh, kw) holds gy[co, id*s - pad + kd*d, ih*s - pad + kh*d, iw*s - pad + kw*d].
      for (int64_t r = 0; r < nrows; ++r) {
        const int64_t q = row0 + r, n = q / (D * H), id = (q / H) % D, ih = q % H;
        for (int64_t kd = 0; kd < kD; ++kd) {
          const int64_t od = id * p.stride[0] - p.pad[0] + kd * p.dil[0];
          for (int64_t kh = 0; kh < kH; ++kh) {
            const int64_t oh = ih * p.stride[1] - p.pad[1] + kh * p.dil[1];
            const bool row_in = od >= 0 && od < Do && oh >= 0 && oh < Ho;
            for (int64_t kw = 0; kw < kW; ++kw) {
              const int64_t tap = (kd * kH + kh) * kW + kw, base_w = kw * p.dil[2] - p.pad[2];
              const int64_t lo = rw.lo[kw], hi = row_in ? rw.hi[kw] : rw.lo[kw];
              if (cl) {
                T* d = col + r * W * K + tap * Cog;  // this tap's Cog channels, per voxel
                const T* s = gyd + (((n * Do + od) * Ho + oh) * Wo + base_w) * Cout + g * Cog;
                for (int64_t iw = 0; iw < W; ++iw) {
                  if (iw >= lo && iw < hi) {
                    copy_run(d + iw * K, s + iw * p.stride[2] * Cout, Cog);
                  } else {
                    zero_run(d + iw * K, Cog);
                  }
                }
              } else {
                // Output column iw * sw + base_w: phase ph of the split rows, index iw + q0.
                const int64_t ph = ((base_w % sw) + sw) % sw, q0 = (base_w - ph) / sw;
                for (int64_t co = 0; co < Cog; ++co) {
                  T* d = col + (co * kvol + tap) * Jt + r * W;
                  const int64_t row_out = ((n * Cout + g * Cog + co) * Do + od) * Ho + oh;
                  const T* s = split ? split + (row_out * sw + ph) * Wq + q0 : gyd + row_out * Wo + base_w;
                  zero_run(d, lo);
                  copy_run(d + lo, s + lo, hi - lo);
                  zero_run(d + hi, W - hi);
                }
              }
            }
          }
        }
      }
      const int64_t n0 = row0 / (D * H), r0 = row0 % (D * H);
      if (need_gx) {
        if (cl) {
          cpu::gemm<T>(MatrixView<T>(col, Jt, K, K), wpack[g], gxd + row0 * W * Cin + g * Cig, Cin);
        } else {
          cpu::gemm<T>(weight_a(g), MatrixView<T>(col, K, Jt, Jt),
                       gxd + (n0 * Cin + g * Cig) * in_vol + r0 * W, in_vol);
        }
      }
      if (need_gw) {
        // Tiles in order. channels_last_3d: (Cig x K) += x_tile^T (Cig x Jt) * col (Jt x K).
        // NCDHW, transposed: (K x Cig) += col (K x Jt, read in place) * x_tile^T (Jt x Cig), so
        // that the GEMM repacks the smaller x instead of the column matrix.
        T* acc = partial.data() + unit * Cig * K;
        if (cl) {
          cpu::gemm<T>(MatrixView<T>(xd + row0 * W * Cin + g * Cig, Cig, Jt, 1, Cin),
                       MatrixView<T>(col, Jt, K, K), acc, K, /*accumulate=*/t > t0);
        } else {
          cpu::gemm<T>(MatrixView<T>(col, K, Jt, Jt),
                       MatrixView<T>(xd + (n0 * Cin + g * Cig) * in_vol + r0 * W, Cig, Jt, in_vol).transposed(),
                       acc, Cig, /*accumulate=*/t > t0);
        }
      }
    }
  });
  if (need_gw) {
    // Fixed-order reduction of the chunks' partial sums into gw[g][ci][co][tap]; a partial sum
    // holds element (ci, co, tap) at ci * K + tap * Cog + co (channels_last_3d) or at
    // (co * kvol + tap) * Cig + ci (NCDHW).
    const int64_t per = Cig * K;
    at::parallel_for(0, G * per, 4096, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const int64_t ci = (j % per) / K, k = j % K;  // k = (co, tap)
        const int64_t src = cl ? ci * K + (k % kvol) * Cog + k / kvol : k * Cig + ci;
        const T* part = partial.data() + (j / per) * chunks * per + src;
        T s = part[0];
        for (int64_t c = 1; c < chunks; ++c) s += part[c * per];
        gwd[j] = s;
      }
    });
  }
}

template <typename T>
void bias_grad(const Params& p, const T* gy, T* out, bool cl) {
  cpu::channel_sums(gy, p.batch, p.out_channels, p.out_volume(), cl, out);
}

at::MemoryFormat layout(bool cl) {
  return cl ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous;
}

// A 5-D tensor in the layout the kernels use, in the compute type (one copy at most).
at::Tensor prepared(const at::Tensor& t, const Params& p, bool cl) {
  at::Tensor x = p.batched ? t : t.unsqueeze(0);
  const auto type = t.scalar_type();
  if (type == at::kHalf || type == at::kBFloat16) x = x.to(at::kFloat);
  return x.contiguous(layout(cl));
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                       at::IntArrayRef dilation) {
  const Params p = check_forward(input, weight, bias, stride, padding, output_padding, groups,
                                 dilation);
  const bool disjoint = taps_are_disjoint(p), scatter = !disjoint && use_scatter_form(p);
  const bool cl = p.channels_last && !scatter;  // the scatter form is NCDHW only
  const at::Tensor x = prepared(input, p, cl), w = weight_as_compute(weight);
  const at::Tensor b = bias.has_value() && bias->defined() ? weight_as_compute(*bias) : at::Tensor();
  at::Tensor y = at::empty({p.batch, p.out_channels, p.out[0], p.out[1], p.out[2]}, x.options(),
                           layout(cl));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d", [&] {
      using T = scalar_t;
      const T* xp = x.const_data_ptr<T>();
      const T* wp = w.const_data_ptr<T>();
      const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
      T* yp = y.data_ptr<T>();
      if (scatter) {
        forward_scatter<T>(p, xp, wp, bp, yp);
      } else if (disjoint) {
        forward_disjoint<T>(p, xp, wp, bp, yp, cl);
      } else {
        forward_phases<T>(p, xp, wp, bp, yp, cl);
      }
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
  const bool cl = p.channels_last;
  const at::Tensor gy = prepared(grad_output, p, cl), x = prepared(input, p, cl);
  const at::Tensor w = weight_as_compute(weight);
  const auto opts = x.options();
  // With work (a non-empty batch) the GEMMs write every element of grad_input and grad_weight.
  const bool work = p.batch > 0;
  at::Tensor gx = at::empty({0}, opts), gw = at::empty({0}, opts), gb = at::empty({0}, opts);
  if (output_mask[0]) gx = at::empty(x.sizes(), opts, layout(cl));
  if (output_mask[1]) gw = work ? at::empty(w.sizes(), opts) : at::zeros(w.sizes(), opts);
  if (output_mask[2]) gb = at::zeros({p.out_channels}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_transpose3d_backward", [&] {
    using T = scalar_t;
    if (work && (output_mask[0] || output_mask[1]))
      backward<T>(p, gy.const_data_ptr<T>(), x.const_data_ptr<T>(), w.const_data_ptr<T>(),
                  output_mask[0] ? gx.data_ptr<T>() : nullptr,
                  output_mask[1] ? gw.data_ptr<T>() : nullptr, cl);
    if (work && output_mask[2]) bias_grad<T>(p, gy.const_data_ptr<T>(), gb.data_ptr<T>(), cl);
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
