// max_unpool2d / max_unpool3d CPU kernels (a 3-D volume is a plane of D*H*W cells).
//
// Forward: each task owns whole output planes (NCHW) or (image, channel block) pairs
// (channels_last), zeroes its part of the output while it is about to be written and then
// scatters the inputs in increasing position order, so with duplicate indices the input
// with the highest position wins -- the rule the CUDA kernel follows too.
// Backward: a gather, grad_input[i] = grad_output[indices[i]].
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

#include "ops/max_unpool/max_unpool.h"

namespace pyseg::max_unpool {
namespace {

constexpr int64_t kChannelBlock = 16;

// Lowers `slot` to `pos` (the smallest bad offset is reported, whatever the thread order).
void note_bad(std::atomic<int64_t>& slot, int64_t pos) {
  int64_t cur = slot.load(std::memory_order_relaxed);
  while (pos < cur && !slot.compare_exchange_weak(cur, pos, std::memory_order_relaxed)) {
  }
}

template <typename scalar_t>
void forward_nchw(const scalar_t* in, const int64_t* idx, scalar_t* out, const Shape& s,
                  std::atomic<int64_t>& bad) {
  const int64_t in_plane = s.in_plane, out_plane = s.out_plane;
  const int64_t planes = s.batch * s.channels;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, in_plane + out_plane));
  at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* x = in + p * in_plane;
      const int64_t* ix = idx + p * in_plane;
      scalar_t* y = out + p * out_plane;
      std::fill(y, y + out_plane, scalar_t(0));
      for (int64_t i = 0; i < in_plane; ++i) {
        const int64_t cell = ix[i];
        if (static_cast<uint64_t>(cell) >= static_cast<uint64_t>(out_plane)) {
          note_bad(bad, p * in_plane + i);
          continue;
        }
        y[cell] = x[i];
      }
    }
  });
}

template <typename scalar_t>
void forward_channels_last(const scalar_t* in, const int64_t* idx, scalar_t* out,
                           const Shape& s, std::atomic<int64_t>& bad) {
  const int64_t C = s.channels, in_plane = s.in_plane, out_plane = s.out_plane;
  // Zeroing first as one contiguous pass is much cheaper than zeroing each channel block's
  // strided slice; the scatter then owns (image, channel block) so that within a task the
  // positions are visited in increasing order (highest position wins, as in NCHW).
  {
    const int64_t total = s.batch * out_plane * C;
    at::parallel_for(0, total, 1 << 16, [&](int64_t begin, int64_t end) {
      std::fill(out + begin, out + end, scalar_t(0));
    });
  }
  // Whole images when there are enough of them to keep every thread busy (each position's
  // channels are then written as one contiguous run), channel blocks otherwise.
  const int64_t block = s.batch >= at::get_num_threads() ? C : kChannelBlock;
  const int64_t blocks = (C + block - 1) / block;
  at::parallel_for(0, s.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks;
      const int64_t c0 = (task % blocks) * block;
      const int64_t cw = std::min(block, C - c0);
      scalar_t* y = out + n * out_plane * C + c0;
      const int64_t base = n * in_plane * C + c0;
      for (int64_t i = 0; i < in_plane; ++i) {
        const scalar_t* x = in + base + i * C;
        const int64_t* ix = idx + base + i * C;
        for (int64_t c = 0; c < cw; ++c) {
          const int64_t cell = ix[c];
          if (static_cast<uint64_t>(cell) >= static_cast<uint64_t>(out_plane)) {
            note_bad(bad, base + i * C + c);
            continue;
          }
          y[cell * C + c] = x[c];
        }
      }
    }
  });
}

at::Tensor forward_cpu(const at::Tensor& self_, const at::Tensor& indices_,
                       at::IntArrayRef output_size, int64_t spatial) {
  const Shape s = check_forward(self_, indices_, output_size, spatial);
  const auto format = memory_format(s);
  at::Tensor self = self_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  at::Tensor output = at::empty(s.output_sizes(), self.options().memory_format(format));
  if (output.numel() == 0) return output;
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "max_unpool2d", [&] {
    if (s.channels_last)
      forward_channels_last(self.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
                            output.data_ptr<scalar_t>(), s, bad);
    else
      forward_nchw(self.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
                   output.data_ptr<scalar_t>(), s, bad);
  });
  if (bad.load() != std::numeric_limits<int64_t>::max()) throw_invalid_index(indices, s, bad.load());
  return output;
}

at::Tensor backward_cpu(const at::Tensor& grad_output_, const at::Tensor& indices_,
                        int64_t spatial) {
  const Shape s = check_backward(grad_output_, indices_, spatial);
  const auto format = memory_format(s);
  at::Tensor grad_output = grad_output_.contiguous(format);
  at::Tensor indices = indices_.contiguous(format);
  at::Tensor grad_input = at::empty(indices.sizes(), grad_output.options().memory_format(format));
  const int64_t numel = indices.numel();
  if (numel == 0) return grad_input;
  const int64_t C = s.channels, in_plane = s.in_plane, out_plane = s.out_plane;
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "max_unpool2d_backward", [&] {
    const scalar_t* g = grad_output.const_data_ptr<scalar_t>();
    const int64_t* ix = indices.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.data_ptr<scalar_t>();
    if (s.channels_last) {
      // Tasks own runs of input positions: C contiguous channels per position.
      const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, C));
      at::parallel_for(0, s.batch * in_plane, grain, [&](int64_t begin, int64_t end) {
        for (int64_t q = begin; q < end; ++q) {
          const scalar_t* gn = g + (q / in_plane) * out_plane * C;
          const int64_t e = q * C;
          for (int64_t c = 0; c < C; ++c) {
            const int64_t cell = ix[e + c];
            if (static_cast<uint64_t>(cell) >= static_cast<uint64_t>(out_plane)) {
              note_bad(bad, e + c);
              gi[e + c] = scalar_t(0);
              continue;
            }
            gi[e + c] = gn[cell * C + c];
          }
        }
      });
    } else {
      const int64_t planes = s.batch * C;
      const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in_plane));
      at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const scalar_t* gp = g + p * out_plane;
          const int64_t* ip = ix + p * in_plane;
          scalar_t* op = gi + p * in_plane;
          for (int64_t i = 0; i < in_plane; ++i) {
            const int64_t cell = ip[i];
            if (static_cast<uint64_t>(cell) >= static_cast<uint64_t>(out_plane)) {
              note_bad(bad, p * in_plane + i);
              op[i] = scalar_t(0);
              continue;
            }
            op[i] = gp[cell];
          }
        }
      });
    }
  });
  if (bad.load() != std::numeric_limits<int64_t>::max()) throw_invalid_index(indices, s, bad.load());
  return grad_input;
}

template <int64_t kSpatial>
at::Tensor max_unpool_cpu(const at::Tensor& self, const at::Tensor& indices,
                          at::IntArrayRef output_size) {
  return forward_cpu(self, indices, output_size, kSpatial);
}

template <int64_t kSpatial>
at::Tensor max_unpool_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices) {
  return backward_cpu(grad_output, indices, kSpatial);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg, CPU, m) {
  m.impl("max_unpool2d", &max_unpool_cpu<2>);
  m.impl("max_unpool2d_backward", &max_unpool_backward_cpu<2>);
  m.impl("max_unpool3d", &max_unpool_cpu<3>);
  m.impl("max_unpool3d_backward", &max_unpool_backward_cpu<3>);
}

}  // namespace pyseg::max_unpool
