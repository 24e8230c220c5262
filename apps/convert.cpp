#include <filesystem>
#include <iostream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "framework/core/errors.hpp"
#include "io/hdf5_dataset.hpp"

namespace stride::app {

int convert(int argc, char** argv) {
  std::string from, src, out, classes;
  po::options_description opts("stride convert options");
  opts.add_options()
      ("from", po::value(&from)->required(), "cifar10 | idx: the kind of the source directory")
      ("src", po::value(&src)->required(), "source directory (also positional)")
      ("out,o", po::value(&out)->required(), "HDF5 file to write")
      ("classes", po::value(&classes), "class names to store (fashion-mnist or a comma-separated list)");
  po::positional_options_description positional;
  positional.add("src", 1);
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride convert --from cifar10|idx SRC --out FILE.h5\n"
                     "Writes /train and /test images (N,C,H,W uint8, chunked, compressed) and labels; see docs/data.md.",
                     &positional))
    return 0;
  if (from != "cifar10" && from != "idx")
    throw UsageError("--from: expected cifar10 or idx, got \"" + one_line(from) + "\"");
  namespace fs = std::filesystem;
  const bool looks_right = from == "cifar10" ? fs::exists(fs::path(src) / "data_batch_1.bin")
                                             : fs::exists(fs::path(src) / "train-images-idx3-ubyte") ||
                                                   fs::exists(fs::path(src) / "train-images-idx3-ubyte.gz");
  if (!looks_right)
    throw IoError(src + ": not a " + from + " directory (expected " +
                  (from == "cifar10" ? "data_batch_1.bin" : "train-images-idx3-ubyte[.gz]") + " in it)");
  convert_dataset(src, out, classes.empty() ? std::vector<std::string>{} : parse_class_names(classes));
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace stride::app
