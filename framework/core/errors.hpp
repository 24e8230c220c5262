#pragma once
// Typed exceptions. Library code throws these and never exits; `main` catches them once, prints a one-line
// message and returns 2 for a usage error (the command line itself is wrong) or 1 for everything else (a file,
// the data, a limit, a numerical fault). Messages name the thing (layer, file, field), what was expected and
// what was found; values that came from outside go through echo() (framework/core/limits.hpp) first.
#include <stdexcept>
#include <string>

namespace stride {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A tensor shape that does not fit a layer, or sizes whose product does not fit in int64: the message names
// the layer and both shapes.
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

// The command line itself is wrong: an unknown option, a value a flag does not take, flags that contradict
// each other. `main` exits with 2 for these (1 for every other error).
struct UsageError : ConfigError {
  using ConfigError::ConfigError;
};

// A request that would exceed a limit (--max-memory, a file-size cap, a decompression ratio): the message
// names the limit and the number that exceeded it.
struct ResourceError : Error {
  using Error::Error;
};

// A NaN or infinity in the loss, the gradients or the weights: the message names the step and the layer.
struct NumericError : Error {
  using Error::Error;
};

}  // namespace stride
