// max_unpool2d's CUDA kernels under the CPU emulator (torch.ops.pyseg_emu): max_unpool_launch.h
// with the emulator's launcher (its twin, max_unpool_cuda.cu, registers the real one).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/max_unpool/max_unpool_launch.h"

namespace pyseg::max_unpool {

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("max_unpool2d", with_launcher<EmuLauncher, &forward<EmuLauncher>>);
  m.impl("max_unpool2d_backward", with_launcher<EmuLauncher, &backward<EmuLauncher>>);
  m.impl("max_unpool3d", with_launcher<EmuLauncher, &forward3d<EmuLauncher>>);
  m.impl("max_unpool3d_backward", with_launcher<EmuLauncher, &backward3d<EmuLauncher>>);
}

}  // namespace pyseg::max_unpool
