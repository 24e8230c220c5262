#pragma once
// The run settings a checkpoint stores (root attribute run_config, JSON) and `--resume` compares, from one
// table in run_config.cpp: each setting's JSON key, the flag that sets it, and whether a resumed run must
// match it.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/lr_schedule.hpp"
#include "framework/train_config.hpp"
#include "io/checkpoint.hpp"

namespace stride {

// The run_config JSON. `schedule` is the filled-in schedule, `augment` the resolved augmentation and
// `train_count` the training samples used.
std::string run_config_json(const TrainConfig& config, const ScheduleOptions& schedule, const std::string& augment,
                            int64_t train_count);

// Every setting of `current` that differs from `stored` and would change the resumed run ("--lr: given 0.1,
// the checkpoint has 0.01"), one line each; empty when the run can continue. The data path, --epochs (unless
// the cosine schedule depends on it), --precision (precision_change), the logging, limit-test and checkpoint
// settings may differ. Throws IoError when `stored` is not a usable run config (a damaged or hostile checkpoint).
std::vector<std::string> run_config_differences(const std::string& stored, const std::string& current);

// --resume without repeating the recipe: `config` with every setting that `config.given` does not name taken
// from `checkpoint` (found at `where`): its run_config, its model spec (instead of resolving --model) and its
// class names. Settings of the process rather than the run (threads, progress, communication) are not stored
// and stay as given. Unchanged when `config.given` is unset. Throws IoError for a stored value of the wrong
// type, and for a stored data path that does not exist from here (a run started in another directory).
TrainConfig with_stored_settings(TrainConfig config, const Checkpoint& checkpoint, const std::string& where);

// When `current` trains in another precision (--precision) than `stored` (fp32 when absent): a sentence
// saying the run continues from the fp32 master weights in the new precision; else empty.
std::string precision_change(const std::string& stored, const std::string& current);

}  // namespace stride
