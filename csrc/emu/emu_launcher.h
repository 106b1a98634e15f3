// The launcher that <op>_emu.cpp instantiates <op>_launch.h with: runs the kernel on the
// CPU under the emulator's scheduler instead of <<<grid, block, shared, stream>>>.
#pragma once

#include <cstdint>
#include <tuple>
#include <type_traits>

#include "emu/runtime.h"

namespace pyseg {

struct EmuLauncher {
  int64_t max_blocks() const { return emu::max_blocks(); }

  template <class... KernelArgs, class... Args>
  void operator()(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                  Args&&... args) const {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    struct Call {
      void (*kernel)(KernelArgs...);
      std::tuple<std::decay_t<KernelArgs>...> args;
    };
    Call call{kernel, std::tuple<std::decay_t<KernelArgs>...>(static_cast<KernelArgs>(args)...)};
    emu::launch(
        grid, block, shared_bytes,
        [](void* p) {
          auto* c = static_cast<Call*>(p);
          std::apply(c->kernel, c->args);  // each thread gets its own copy of the arguments
        },
        &call);
  }
};

}  // namespace pyseg
