// max_unpool2d's CUDA kernels under the CPU emulator: torch.ops.pyseg_emu.max_unpool2d.
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/max_unpool/max_unpool_launch.h"

namespace pyseg::max_unpool {
namespace {

at::Tensor max_unpool2d_emu(const at::Tensor& self, const at::Tensor& indices,
                            at::IntArrayRef output_size) {
  return forward(EmuLauncher{}, self, indices, output_size);
}

at::Tensor max_unpool2d_backward_emu(const at::Tensor& grad_output, const at::Tensor& indices) {
  return backward(EmuLauncher{}, grad_output, indices);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("max_unpool2d", &max_unpool2d_emu);
  m.impl("max_unpool2d_backward", &max_unpool2d_backward_emu);
}

}  // namespace pyseg::max_unpool
