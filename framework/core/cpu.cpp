#include "framework/core/cpu.hpp"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "framework/core/errors.hpp"
#include "framework/core/kernels/kernels.hpp"

namespace stride {
namespace kernels {
const KernelTable& avx512bf16_table();
const KernelTable& avx512_table();
const KernelTable& avx2_table();
const KernelTable& generic_table();
}  // namespace kernels

namespace {

struct Features {
  bool avx2_fma = false;
  bool avx512 = false;
  bool avx512bf16 = false;
};

// XCR0: which register states the OS saves on a context switch (bits 1-2: SSE/AVX, 5-7: AVX-512).
uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Features detect() {
  Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16);
  f.avx2_fma = ymm_state && avx2 && fma;
  f.avx512 = f.avx2_fma && zmm_state && avx512f;
  if (f.avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = a & (1u << 5);
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

std::atomic<int> g_forced{-1};

Isa from_environment() {
  const char* env = std::getenv("STRIDE_ISA");
  if (!env || !*env) return best_supported_isa();
  const Isa isa = parse_isa(env, "STRIDE_ISA");
  if (!isa_supported(isa))
    throw ConfigError(std::string("STRIDE_ISA: this CPU cannot run the ") + isa_name(isa) + " path (best: " +
                      isa_name(best_supported_isa()) + ")");
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512bf16: return "avx512bf16";
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::generic: return "generic";
  }
  return "?";
}

Isa best_supported_isa() {
  if (features().avx512bf16) return Isa::avx512bf16;
  if (features().avx512) return Isa::avx512;
  if (features().avx2_fma) return Isa::avx2;
  return Isa::generic;
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::avx512bf16: return features().avx512bf16;
    case Isa::avx512: return features().avx512;
    case Isa::avx2: return features().avx2_fma;
    case Isa::generic: return true;
  }
  return false;
}

Isa parse_isa(const std::string& name, const std::string& what) {
  if (name == "avx512bf16") return Isa::avx512bf16;
  if (name == "avx512") return Isa::avx512;
  if (name == "avx2") return Isa::avx2;
  if (name == "generic") return Isa::generic;
  throw ConfigError(what + ": expected avx512bf16, avx512, avx2 or generic, got '" + name + "'");
}

Isa active_isa() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<Isa>(forced);
  static const Isa chosen = from_environment();
  return chosen;
}

void set_isa(Isa isa) {
  if (!isa_supported(isa))
    throw ConfigError(std::string("this CPU cannot run the ") + isa_name(isa) + " path");
  g_forced.store(static_cast<int>(isa), std::memory_order_relaxed);
}

namespace {
// The best rate of many short runs of a register-only probe: on a shared machine other load only ever makes a
// run slower.
double measure_peak(double (*probe)(int64_t), Isa isa) {
  const int64_t iterations = isa == Isa::generic ? 100000 : 500000;
  probe(iterations);  // wake the core up (frequency, vector unit power-up)
  double peak = 0.0;
  for (int run = 0; run < 40; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = probe(iterations);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    peak = std::max(peak, flops / s * 1e-9);
  }
  return peak;
}

enum class Probe { fma, dpbf16 };

// Measured once per (probe, path) for the life of the process (40 timed runs): `stride bench` reads a peak
// several times per report.
double cached_peak(Probe probe, Isa isa) {
  static std::mutex mutex;
  static double cache[2][4] = {};
  std::lock_guard<std::mutex> lock(mutex);
  double& peak = cache[static_cast<int>(probe)][static_cast<int>(isa)];
  if (peak > 0) return peak;
  const kernels::KernelTable* t = kernels::kernel_table(isa);
  if (!t) throw ConfigError(std::string("this CPU cannot run the ") + isa_name(isa) + " path");
  peak = measure_peak(probe == Probe::fma ? t->fma_probe : t->dpbf16_probe, isa);
  return peak;
}
}  // namespace

double fma_peak_gflops(Isa isa) { return cached_peak(Probe::fma, isa); }

double bf16_peak_gflops(Isa isa) { return cached_peak(Probe::dpbf16, isa); }

namespace kernels {

const KernelTable* kernel_table(Isa isa) {
  if (!isa_supported(isa)) return nullptr;
  switch (isa) {
    case Isa::avx512bf16: return &avx512bf16_table();
    case Isa::avx512: return &avx512_table();
    case Isa::avx2: return &avx2_table();
    case Isa::generic: return &generic_table();
  }
  return nullptr;
}

const KernelTable& kernels() { return *kernel_table(active_isa()); }

}  // namespace kernels
}  // namespace stride
