// grid_sample's CUDA kernels under the CPU emulator (torch.ops.pyseg_emu): grid_sample_launch.h
// with the emulator's launcher (its twin, grid_sample_cuda.cu, registers the real one).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/grid_sample/grid_sample_launch.h"

namespace pyseg::grid_sample {

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("grid_sample", with_launcher<EmuLauncher, &forward<EmuLauncher>>);
  m.impl("grid_sample_backward", with_launcher<EmuLauncher, &backward<EmuLauncher>>);
}

}  // namespace pyseg::grid_sample
