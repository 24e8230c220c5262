#pragma once
// Typed exceptions. Library code throws these and never exits; `main` catches them, prints a one-line
// message and returns non-zero. Messages name the thing (layer, file, field), what was expected and
// what was found.
#include <stdexcept>
#include <string>

namespace stride {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A tensor shape that does not fit a layer: the message names the layer and both shapes.
struct ShapeError : Error {
  using Error::Error;
};

// A file that cannot be read or written, or whose bytes are not what its format promises.
struct IoError : Error {
  using Error::Error;
};

// A model spec, run config or command-line value that is not valid.
struct ConfigError : Error {
  using Error::Error;
};

}  // namespace stride
