// conv_transpose3d's CUDA kernels under the CPU emulator (torch.ops.pyseg_emu):
// conv_transpose3d_launch.h with the emulator's launcher (its twin, conv_transpose3d_cuda.cu,
// registers the real one).
#include <torch/library.h>

#include "emu/emu_launcher.h"
#include "ops/conv_transpose3d/conv_transpose3d_launch.h"

namespace pyseg::conv_transpose3d {

TORCH_LIBRARY_IMPL(pyseg_emu, CPU, m) {
  m.impl("conv_transpose3d", with_launcher<EmuLauncher, &forward<EmuLauncher>>);
  m.impl("conv_transpose3d_backward", with_launcher<EmuLauncher, &backward<EmuLauncher>>);
}

}  // namespace pyseg::conv_transpose3d
