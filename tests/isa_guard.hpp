#pragma once
// Restores the active kernel path (framework/core/cpu.hpp) at the end of a test that forces one with set_isa.
#include "framework/core/cpu.hpp"

namespace stride::test {

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_isa(saved); }
};

}  // namespace stride::test
