// Binds a launch function of <op>_launch.h, written once against a Launcher, as an operator
// kernel: with_launcher<CudaLauncher, &forward<CudaLauncher>> is a plain function with
// forward's parameters minus the launcher, for TORCH_LIBRARY_IMPL's m.impl(). Around the
// call it holds a Launcher::OpGuard built from the arguments: the CUDA launcher's selects
// the device of the first tensor, the emulator's registers the tensors (and everything the
// op allocates) as the memory its kernels may touch.
#pragma once

namespace pyseg {
namespace detail {

template <class Launcher, auto Fn>
struct Bound;

template <class Launcher, class R, class... Args, R (*Fn)(const Launcher&, Args...)>
struct Bound<Launcher, Fn> {
  static R call(Args... args) {
    typename Launcher::OpGuard guard(args...);
    return Fn(Launcher{}, args...);
  }
};

}  // namespace detail

template <class Launcher, auto Fn>
inline constexpr auto with_launcher = &detail::Bound<Launcher, Fn>::call;

}  // namespace pyseg
