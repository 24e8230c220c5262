#include <iostream>
#include <sstream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "framework/errors.hpp"
#include "framework/parallel.hpp"
#include "framework/trainer.hpp"

namespace stride::app {

int train(int argc, char** argv) {
  TrainConfig c;
  int threads = 0;
  std::string config_file, milestones, classes;
  po::options_description opts("stride train options");
  opts.add_options()
      ("model,m", po::value(&c.model)->default_value(c.model), "zoo name (lenet5, cifar10_quick, resnet8, resnet20, mlp) or spec file")
      ("data,d", po::value(&c.data), "CIFAR-10 binary directory, IDX directory (MNIST, Fashion-MNIST) or HDF5 file")
      ("out,o", po::value(&c.out)->default_value(c.out), "run directory (metrics.jsonl, final.h5)")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "total number of epochs")
      ("batch", po::value(&c.batch)->default_value(c.batch), "batch size")
      ("lr", po::value(&c.lr)->default_value(c.lr), "base learning rate")
      ("optimizer", po::value(&c.optimizer.kind)->default_value(c.optimizer.kind), "sgd | adam | adamw")
      ("momentum", po::value(&c.optimizer.momentum)->default_value(c.optimizer.momentum), "SGD momentum")
      ("nesterov", po::bool_switch(&c.optimizer.nesterov), "Nesterov momentum")
      ("weight-decay", po::value(&c.optimizer.weight_decay)->default_value(c.optimizer.weight_decay), "L2 weight decay (decoupled for adamw)")
      ("no-decay-bias-bn", po::bool_switch(), "do not decay biases and batch-norm scale/shift")
      ("beta1", po::value(&c.optimizer.beta1)->default_value(c.optimizer.beta1), "Adam beta1")
      ("beta2", po::value(&c.optimizer.beta2)->default_value(c.optimizer.beta2), "Adam beta2")
      ("schedule", po::value(&c.schedule.kind)->default_value("cosine"), "constant | step | multistep | cosine")
      ("step-size", po::value(&c.schedule.step_size)->default_value(0), "epochs between decays (step)")
      ("milestones", po::value(&milestones), "epochs at which to decay, e.g. 30,60 (multistep)")
      ("gamma", po::value(&c.schedule.gamma)->default_value(c.schedule.gamma), "decay factor (step, multistep)")
      ("warmup-steps", po::value(&c.schedule.warmup_steps)->default_value(0), "linear warm-up iterations")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of every random choice (init, shuffle, augmentation, dropout)")
      ("threads", po::value(&threads)->default_value(0), "worker threads (0 = all cores)")
      ("augment", po::value(&c.augment)->default_value(c.augment), "none | crop-flip | auto (crop-flip for 3x32x32 data)")
      ("init", po::value(&c.init_weights), "start from the weights in this checkpoint / final.h5")
      ("classes", po::value(&classes), "class names: fashion-mnist, or a comma-separated list")
      ("log-every", po::value(&c.log_every)->default_value(c.log_every), "steps between progress lines")
      ("limit-train", po::value(&c.limit_train)->default_value(0), "use only the first N training images")
      ("limit-test", po::value(&c.limit_test)->default_value(0), "use only the first N test images")
      ("no-progress", po::bool_switch(), "plain progress lines even on a terminal")
      ("config", po::value(&config_file), "run config file (key = value lines with these option names)");
  po::variables_map vm;
  if (!parse_options(argc, argv, opts, vm,
                     "usage: stride train --model NAME|SPEC --data DIR|FILE.h5 [options]\n"
                     "Trains on all cores; writes RUN_DIR/metrics.jsonl and RUN_DIR/final.h5.",
                     nullptr, /*allow_config=*/true))
    return 0;
  c.optimizer.decay_all = !vm["no-decay-bias-bn"].as<bool>();
  c.progress = !vm["no-progress"].as<bool>();
  if (!milestones.empty()) {
    std::stringstream ss(milestones);
    std::string part;
    while (std::getline(ss, part, ',')) {
      try {
        c.schedule.milestones.push_back(std::stoll(part));
      } catch (const std::exception&) {
        throw ConfigError("--milestones: expected comma-separated epochs, got \"" + milestones + "\"");
      }
    }
  }
  if (!classes.empty()) c.class_names = parse_class_names(classes);
  if (threads < 0) throw ConfigError("--threads: expected >= 0, got " + std::to_string(threads));
  std::unique_ptr<ThreadLimit> limit;
  if (threads > 0) limit = std::make_unique<ThreadLimit>(threads);

  TrainResult r = train(c, std::cout);
  std::cout << "test accuracy " << r.test_accuracy << "\n"
            << "model: " << r.final_path << "\n"
            << "metrics: " << r.metrics_path << "\n";
  return 0;
}

}  // namespace stride::app
