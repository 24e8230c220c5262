#pragma once
// Runs a callable that must throw, and returns the message so tests can check what it names.
#include <doctest/doctest.h>

#include <exception>
#include <string>
#include <utility>

#include "framework/core/errors.hpp"

namespace stride::test {

// Requires f() to throw an E; returns its what(). Fails the test for another exception or none.
template <class E, class F>
std::string thrown_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected a different exception type, got: " << e.what());
  }
  FAIL("expected an exception, nothing was thrown");
  return {};
}

template <class F>
std::string io_error(F&& f) {
  return thrown_message<IoError>(std::forward<F>(f));
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace stride::test
