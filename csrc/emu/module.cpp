// pyseg._emu: the operator library `pyseg_emu` -- every op of `pyseg` with its CUDA launcher
// and kernels run by the CPU emulator (kernels registered in csrc/ops/<op>/<op>_emu.cpp) --
// plus emulator controls and self-test kernels for tests/emu.
#include <torch/extension.h>

#include "emu/emu_launcher.h"
#include "emu/runtime.h"
#include "emu/selftest_kernels.cuh"
#include "schemas.h"

namespace {

using pyseg::EmuLauncher;
namespace st = pyseg::emu_selftest;

// Runs one of the self-test kernels on a CPU tensor; `block` is the block size.
std::vector<at::Tensor> selftest(const std::string& name, const at::Tensor& x_, int64_t block,
                                 int64_t grid) {
  TORCH_CHECK(x_.device().is_cpu(), "selftest: x must be a CPU tensor");
  at::Tensor x = x_.contiguous();
  const int64_t n = x.numel();
  EmuLauncher launch;
  const dim3 b(static_cast<unsigned>(block)), g(static_cast<unsigned>(grid));
  if (name == "block_sum" || name == "warp_sum") {
    at::Tensor partial = at::zeros({grid}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "selftest", [&] {
      auto k = name == "block_sum" ? st::block_sum<scalar_t> : st::warp_sum<scalar_t>;
      launch(k, g, b, 0, x.const_data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), n);
    });
    return {partial};
  }
  if (name == "atomic_sum") {
    at::Tensor out = at::zeros({1}, x.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "selftest", [&] {
      launch(st::atomic_sum<scalar_t>, g, b, 0, x.const_data_ptr<scalar_t>(),
             out.data_ptr<scalar_t>(), n);
    });
    return {out};
  }
  if (name == "block_reverse") {
    at::Tensor y = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "selftest", [&] {
      launch(st::block_reverse<scalar_t>, dim3((n + block - 1) / block), b, block * sizeof(scalar_t),
             x.const_data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n);
    });
    return {y};
  }
  if (name == "warp_collectives") {
    TORCH_CHECK(x.scalar_type() == at::kInt && n % block == 0 && block % 32 == 0,
                "warp_collectives: int32 input whose size is a multiple of a block of full warps");
    at::Tensor scan = at::empty_like(x), xs = at::empty_like(x), bc = at::empty_like(x);
    at::Tensor ballot = at::empty_like(x);
    launch(st::warp_collectives, dim3(n / block), b, 0, x.const_data_ptr<int>(),
           scan.data_ptr<int>(), xs.data_ptr<int>(), bc.data_ptr<int>(),
           reinterpret_cast<unsigned*>(ballot.data_ptr<int>()));
    return {scan, xs, bc, ballot};
  }
  if (name == "divergent_barrier") {
    at::Tensor y = at::zeros({block}, x.options().dtype(at::kInt));
    launch(st::divergent_barrier, dim3(1), b, 0, y.data_ptr<int>());
    return {y};
  }
  if (name == "coordinates") {
    // grid x grid blocks of block x block threads.
    const int64_t side = grid * block;
    at::Tensor out = at::full({side, side}, -1, x.options().dtype(at::kInt));
    launch(st::coordinates, dim3(grid, grid), dim3(block, block), 0, out.data_ptr<int>(),
           static_cast<int>(side));
    return {out};
  }
  TORCH_CHECK(false, "selftest: unknown kernel '", name, "'");
}

}  // namespace

TORCH_LIBRARY(pyseg_emu, m) { pyseg::define_schemas(m); }

PYBIND11_MODULE(_emu, m) {
  namespace emu = pyseg::emu;
  m.doc() = "pyseg's CUDA kernels run on the CPU by the emulator (torch.ops.pyseg_emu)";
  m.def("set_thread_order", [](const std::string& order, uint64_t seed) {
    if (order == "forward") emu::set_thread_order(emu::ThreadOrder::kForward, seed);
    else if (order == "reverse") emu::set_thread_order(emu::ThreadOrder::kReverse, seed);
    else if (order == "random") emu::set_thread_order(emu::ThreadOrder::kRandom, seed);
    else throw std::invalid_argument("thread order must be 'forward', 'reverse' or 'random', got '" + order + "'");
  }, py::arg("order"), py::arg("seed") = 0,
     "Order in which the threads of a block are resumed: 'forward', 'reverse' or 'random'.");
  m.def("thread_order", [] {
    switch (emu::thread_order()) {
      case emu::ThreadOrder::kReverse: return std::string("reverse");
      case emu::ThreadOrder::kRandom: return std::string("random");
      default: return std::string("forward");
    }
  });
  m.def("set_max_blocks", &emu::set_max_blocks, py::arg("blocks"),
        "Cap on 1-D grid sizes (small, so grid-stride loops run in tests).");
  m.def("max_blocks", &emu::max_blocks);
  m.def("stats", [] {
    auto s = emu::stats();
    py::dict d;
    d["launches"] = s.launches;
    d["blocks"] = s.blocks;
    d["threads"] = s.threads;
    d["barriers"] = s.barriers;
    d["warp_collectives"] = s.warp_collectives;
    return d;
  }, "Counters since the last reset_stats().");
  m.def("reset_stats", &emu::reset_stats);
  m.def("selftest", &selftest, py::arg("name"), py::arg("x"), py::arg("block"), py::arg("grid") = 1,
        "Runs one of the emulator's self-test kernels (see csrc/emu/selftest_kernels.cuh).");
}
