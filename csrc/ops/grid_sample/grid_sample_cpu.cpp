// grid_sample CPU kernels: argument checks, allocation and the choice of kernel.
//
// float and double run the vectorized kernels of grid_sample_cpu_kernel.cpp (one variant per
// CPU capability, chosen at load time); float16 / bfloat16, and float inputs too large for
// 32-bit plane offsets, run the scalar kernels below. Both produce the output (and
// grad_input) in the input's memory format, and read a channels_last input in place.
//
// Forward: parallel over (image, block of output points); each point's taps are computed
// once and reused across channels (grid_sample_math.h).
//
// Backward, deterministic whatever the thread count or scheduling: grad_grid is a gather
// (each point sums over its channels and taps). grad_input is a scatter, done in a fixed
// number of chunks per image that depends only on the shapes (never on the thread count):
// chunk k of image n owns the points [k * P / K, (k + 1) * P / K) and a private accumulation
// buffer, visited in increasing point order; the K partial sums are then added in the
// order k = 0, 1, ..., K - 1 (with K = 1, the scatter goes straight into grad_input). Every
// run, with any number of threads, performs the same floating-point operations in the same
// order, so results are bitwise reproducible (for a given CPU capability variant: the vector
// width changes the order of the channel sums).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/add.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "ops/grid_sample/grid_sample.h"
#include "ops/grid_sample/grid_sample_cpu_kernel.h"

namespace pyseg::grid_sample {

cpu::CpuStub<ForwardFn<2, float>> forward_2d_f32_stub;
cpu::CpuStub<ForwardFn<2, double>> forward_2d_f64_stub;
cpu::CpuStub<ForwardFn<3, float>> forward_3d_f32_stub;
cpu::CpuStub<ForwardFn<3, double>> forward_3d_f64_stub;
cpu::CpuStub<BackwardFn<2, float>> backward_2d_f32_stub;
cpu::CpuStub<BackwardFn<2, double>> backward_2d_f64_stub;
cpu::CpuStub<BackwardFn<3, float>> backward_3d_f32_stub;
cpu::CpuStub<BackwardFn<3, double>> backward_3d_f64_stub;

namespace {

constexpr int64_t kPointsPerChunk = 4096;  // grad_input chunking: >= this many points each
constexpr int64_t kMaxChunks = 8;
constexpr int64_t kMaxChunkBytes = int64_t{1} << 28;  // bound on the partial sums' memory

constexpr int64_t kPointBlock = 64;  // forward: taps of this many points, then the channels

// A point's in-bounds taps as (offset in the plane, combined weight) pairs, so that the
// channel loop is a short dot product without bounds checks.
template <typename T>
struct FlatTaps {
  int count;
  int64_t offset[16];  // bicubic: 4 x 4; trilinear: 2 x 2 x 2
  T weight[16];
};

template <int D, typename scalar_t>
void forward_kernel(const at::Tensor& input, const at::Tensor& grid, at::Tensor& flat_out,
                    const Geometry<D>& g) {
  using T = at::opmath_type<scalar_t>;
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* gr = grid.const_data_ptr<scalar_t>();
  scalar_t* out = flat_out.data_ptr<scalar_t>();
  const int64_t N = input.size(0), P = g.points;
  const int64_t blocks = (P + kPointBlock - 1) / kPointBlock;
  // One task per (image, block of points): the block's taps are computed once, then each
  // channel is sampled for the whole block (reads stay in one input plane, writes run along
  // the output row in NCHW).
  at::parallel_for(0, N * blocks, 1, [&, g_shared = g](int64_t begin, int64_t end) {
    const Geometry<D> g = g_shared;  // a local copy: stores below cannot alias its fields
    FlatTaps<T> taps[kPointBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, p0 = (task - n * blocks) * kPointBlock;
      const int64_t count = std::min(kPointBlock, P - p0);
      for (int64_t i = 0; i < count; ++i) {
        FlatTaps<T>& f = taps[i];
        f.count = 0;
        for_each_tap<D, T>(point_taps<D, T>(g, gr, n, p0 + i), g,
                           [&](int64_t off, T w, const T*) {
                             f.offset[f.count] = off;
                             f.weight[f.count++] = w;
                           });
      }
      const scalar_t* in_n = in + n * g.in_stride_n;
      scalar_t* out_n = out + n * g.out_stride_n + p0 * g.out_stride_p;
      for (int64_t c = 0; c < g.channels; ++c) {
        const scalar_t* plane = in_n + c * g.in_stride_c;
        scalar_t* row = out_n + c * g.out_stride_c;
        for (int64_t i = 0; i < count; ++i) {
          const FlatTaps<T>& f = taps[i];
          T acc = 0;
          for (int k = 0; k < f.count; ++k) acc += f.weight[k] * static_cast<T>(plane[f.offset[k]]);
          row[i * g.out_stride_p] = static_cast<scalar_t>(acc);
        }
      }
    }
  });
}

// The vectorized kernels take float or double; float tap offsets within a plane are 32-bit
// integers and its extents are compared as floats (exact below 2^24).
bool vectorized_fits(const at::Tensor& input) {
  if (input.scalar_type() == at::kDouble) return true;
  if (input.scalar_type() != at::kFloat) return false;
  int64_t max_offset = 0;
  for (int64_t i = 2; i < input.dim(); ++i) {
    if (input.size(i) >= (int64_t{1} << 24)) return false;
    max_offset += (input.size(i) - 1) * input.stride(i);
  }
  return max_offset < (int64_t{1} << 31) - 1;
}

template <int D>
at::Tensor forward_dim(const at::Tensor& input, const at::Tensor& grid, int64_t mode,
                       int64_t padding_mode, bool align_corners) {
  at::Tensor output =
      at::empty(output_sizes(input, grid), input.options().memory_format(output_format(input)));
  if (output.numel() == 0) return output;
  at::Tensor fgrid = flat_grid(grid), fout = flat_view(output);
  const Geometry<D> g = make_geometry<D>(input, fgrid, fout, mode, padding_mode, align_corners);
  if (vectorized_fits(input)) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample", [&] {
      const ForwardArgs<D, scalar_t> args{input.const_data_ptr<scalar_t>(),
                                          fgrid.const_data_ptr<scalar_t>(),
                                          fout.data_ptr<scalar_t>(), g, input.size(0)};
      forward_stub<D, scalar_t>()()(args);
    });
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "grid_sample", [&] {
    forward_kernel<D, scalar_t>(input, fgrid, fout, g);
  });
  return output;
}

at::Tensor grid_sample_cpu(const at::Tensor& input, const at::Tensor& grid, int64_t mode,
                           int64_t padding_mode, bool align_corners) {
  check_inputs(input, grid, mode, padding_mode);
  return input.dim() == 4 ? forward_dim<2>(input, grid, mode, padding_mode, align_corners)
                          : forward_dim<3>(input, grid, mode, padding_mode, align_corners);
}

// The number of grad_input chunks per image: a function of the shapes only. Each chunk costs
// an image-sized buffer to zero and to add, so a chunk gets at least as many points as the
// input plane has pixels (and kPointsPerChunk).
int64_t chunks_for(int64_t batch, int64_t points, int64_t plane, int64_t channels,
                   int64_t elem_bytes) {
  const int64_t plane_elems = plane * channels;
  int64_t k = std::clamp<int64_t>(points / std::max(kPointsPerChunk, plane), 1, kMaxChunks);
  while (k > 1 && batch * k * plane_elems * elem_bytes > kMaxChunkBytes) k /= 2;
  return k;
}

template <int D, typename scalar_t>
void backward_kernel(const at::Tensor& flat_grad_out, const at::Tensor& input,
                     const at::Tensor& grid, const Geometry<D>& g, bool need_input,
                     bool need_grid, at::Tensor& partial, int64_t chunks,
                     at::Tensor& grad_grid) {
  using T = at::opmath_type<scalar_t>;
  const scalar_t* go = flat_grad_out.const_data_ptr<scalar_t>();
  const scalar_t* in = input.const_data_ptr<scalar_t>();
  const scalar_t* gr = grid.const_data_ptr<scalar_t>();
  T* acc = need_input ? partial.data_ptr<T>() : nullptr;
  scalar_t* gg = need_grid ? grad_grid.data_ptr<scalar_t>() : nullptr;
  const int64_t N = input.size(0), P = g.points;
  const int64_t plane = input.numel() / (N * g.channels);  // input is contiguous here
  // One task per (image, chunk): the point order inside a task is fixed.
  at::parallel_for(0, N * chunks, 1, [&, g_shared = g](int64_t begin, int64_t end) {
    const Geometry<D> g = g_shared;  // a local copy: stores below cannot alias its fields
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks, k = task - n * chunks;
      const int64_t p0 = k * P / chunks, p1 = (k + 1) * P / chunks;
      T* acc_nk = need_input ? acc + task * g.channels * plane : nullptr;
      const scalar_t* in_n = in + n * g.in_stride_n;
      for (int64_t p = p0; p < p1; ++p) {
        const Taps<D, T> t = point_taps<D, T>(g, gr, n, p);
        T grad[3];
        backward_point<D, T>(t, g, in_n, go + n * g.out_stride_n + p * g.out_stride_p,
                             need_input, need_grid, grad,
                             [&](int64_t c, int64_t off, T v) { acc_nk[c * plane + off] += v; });
        if (need_grid)
          for (int a = 0; a < D; ++a) gg[(n * P + p) * D + a] = static_cast<scalar_t>(grad[a]);
      }
    }
  });
}

// The vectorized backward: the input is read in its own memory format, and grad_input is
// accumulated in that format (straight into grad_input when there is one chunk per image).
template <int D, typename T>
void backward_vectorized(const at::Tensor& go, const at::Tensor& input, const at::Tensor& fgrid,
                         const Geometry<D>& g, bool need_input, bool need_grid,
                         at::Tensor& grad_input, at::Tensor& grad_grid) {
  const int64_t N = input.size(0);
  const int64_t image = input.numel() / N;  // elements per image, in memory order
  const int64_t chunks =
      chunks_for(N, g.points, image / g.channels, g.channels, static_cast<int64_t>(sizeof(T)));
  at::Tensor partial;
  T* target = nullptr;
  if (need_input) {
    if (chunks == 1) {
      grad_input.zero_();
      target = grad_input.data_ptr<T>();
    } else {
      partial = at::zeros({N * chunks * image}, input.options());
      target = partial.data_ptr<T>();
    }
  }
  const BackwardArgs<D, T> args{go.const_data_ptr<T>(), input.const_data_ptr<T>(),
                                fgrid.const_data_ptr<T>(), target, chunks, image,
                                need_grid ? grad_grid.data_ptr<T>() : nullptr, g, N, need_input,
                                need_grid};
  backward_stub<D, T>()()(args);
  if (need_input && chunks > 1) {
    // Partial sums added in chunk order, element by element.
    const T* part = partial.const_data_ptr<T>();
    T* out = grad_input.data_ptr<T>();
    at::parallel_for(0, N * image, 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t n = i / image;
        const T* src = part + n * chunks * image + (i - n * image);
        T sum = src[0];
        for (int64_t k = 1; k < chunks; ++k) sum += src[k * image];
        out[i] = sum;
      }
    });
  }
}

template <int D>
std::tuple<at::Tensor, at::Tensor> backward_dim(const at::Tensor& grad_output,
                                                const at::Tensor& input_, const at::Tensor& grid,
                                                int64_t mode, int64_t padding_mode,
                                                bool align_corners, bool need_input,
                                                bool need_grid) {
  const auto format = output_format(input_);
  const at::Tensor in_format = input_.contiguous(format);
  const bool vectorized = vectorized_fits(in_format);
  // The scalar scatter addresses planes by their contiguous offset: it reads NC(D)HW.
  const at::Tensor input = vectorized ? in_format : input_.contiguous();
  at::Tensor grad_input = need_input ? at::empty(input_.sizes(), input_.options().memory_format(format))
                                     : at::empty({0}, input_.options());
  at::Tensor grad_grid = need_grid ? at::empty(grid.sizes(), grid.options())
                                   : at::empty({0}, grid.options());
  const int64_t N = input.size(0), C = input.size(1);
  const int64_t plane = input.numel() / std::max<int64_t>(1, N * C);
  at::Tensor fgrid = flat_grid(grid);
  const int64_t P = fgrid.size(1);
  if (N * P == 0 || C == 0) {  // nothing reads the input
    if (need_input) grad_input.zero_();
    if (need_grid) grad_grid.zero_();
    return {grad_input, grad_grid};
  }
  at::Tensor go = grad_output.contiguous(format);
  at::Tensor fgo = flat_view(go);
  const Geometry<D> g = make_geometry<D>(input, fgrid, fgo, mode, padding_mode, align_corners);
  if (vectorized) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample_backward", [&] {
      backward_vectorized<D, scalar_t>(go, input, fgrid, g, need_input, need_grid, grad_input,
                                       grad_grid);
    });
    return {grad_input, grad_grid};
  }
  const auto acc_type = at::toOpMathType(input.scalar_type());
  const int64_t chunks =
      chunks_for(N, P, plane, C, static_cast<int64_t>(c10::elementSize(acc_type)));
  at::Tensor partial = need_input ? at::zeros({N, chunks, C, plane}, input.options().dtype(acc_type))
                                  : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "grid_sample_backward", [&] {
    backward_kernel<D, scalar_t>(fgo, input, fgrid, g, need_input, need_grid, partial, chunks,
                                 grad_grid);
  });
  if (need_input) {
    // Partial sums added in chunk order (at::sum's order over a dim is not specified).
    at::Tensor total = partial.select(1, 0);
    for (int64_t k = 1; k < chunks; ++k) total = at::add(total, partial.select(1, k));
    grad_input.copy_(total.view(input.sizes()));
  }
  return {grad_input, grad_grid};
}

std::tuple<at::Tensor, at::Tensor> grid_sample_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& grid,
    int64_t mode, int64_t padding_mode, bool align_corners, std::array<bool, 2> output_mask) {
  check_inputs(input, grid, mode, padding_mode);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(output_sizes(input, grid)),
              "grid_sampler_backward(): expected grad_output of sizes ", output_sizes(input, grid),
              ", but got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "grid_sampler_backward(): expected grad_output of dtype ", input.scalar_type(),
              ", but got ", grad_output.scalar_type());
  return input.dim() == 4
             ? backward_dim<2>(grad_output, input, grid, mode, padding_mode, align_corners,
                               output_mask[0], output_mask[1])
             : backward_dim<3>(grad_output, input, grid, mode, padding_mode, align_corners,
                               output_mask[0], output_mask[1]);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("grid_sample", &grid_sample_cpu);
  m.impl("grid_sample_backward", &grid_sample_backward_cpu);
}

}  // namespace pyseg::grid_sample
