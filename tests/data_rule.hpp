#pragma once
// Tests that need data files (the shared CIFAR-10 and MNIST samples, Debian's Fashion-MNIST) ask here first.
// Under CI (CI=true) missing data is a failure naming the path, never a quiet pass: a test that skipped would
// hide that the data step of CI broke. Elsewhere the test reports "skipped" and returns.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace stride::test {

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// True when `path` exists. Otherwise: FAIL_CHECK under CI, a "skipped" MESSAGE elsewhere; false either way.
inline bool have_data(const std::filesystem::path& path) {
  if (std::filesystem::exists(path)) return true;
  if (under_ci()) {
    FAIL_CHECK("CI=true: the data this test needs is missing: " << path.string());
  } else {
    MESSAGE("skipped: " << path.string() << " is missing (under CI=true this fails)");
  }
  return false;
}

}  // namespace stride::test
