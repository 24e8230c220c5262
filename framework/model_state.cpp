#include "framework/model_state.hpp"

#include <algorithm>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride {

void store_parameters(const Network& net, Checkpoint& ckpt) {
  for (const auto& e : net.param_entries()) {
    auto v = net.values_of(e.name);
    ckpt.params[e.name] = StoredArray{e.shape, std::vector<float>(v.begin(), v.end())};
  }
}

void store_optimizer(const Optimizer& opt, const Network& net, Checkpoint& ckpt) {
  ckpt.optimizer_kind = opt.kind();
  ckpt.optimizer_steps = opt.step_count();
  const auto& slots = opt.slot_names();
  for (size_t i = 0; i < slots.size(); ++i)
    for (const auto& p : opt.params()) {
      auto v = opt.slot(i).subspan(static_cast<size_t>(p.offset), static_cast<size_t>(p.size));
      ckpt.optimizer[p.name + "/" + slots[i]] = StoredArray{net.entry(p.name).shape, std::vector<float>(v.begin(), v.end())};
    }
}

void restore_parameters(Network& net, const Checkpoint& ckpt, const std::string& path) {
  // Every name and shape is compared before the network's buffers are allocated, so a spec that claims far
  // more parameters than the file holds fails here instead of allocating them first.
  for (const auto& e : net.param_entries()) {
    auto it = ckpt.params.find(e.name);
    if (it == ckpt.params.end()) throw IoError(path + ": has no /params/" + echo(e.name) + ", which the model needs");
    if (it->second.shape != e.shape)
      throw IoError(path + ": /params/" + echo(e.name) + ": expected shape " + e.shape.str() + ", got " +
                    it->second.shape.str());
  }
  for (const auto& item : ckpt.params) {
    const std::string& name = item.first;  // a plain reference: clang 14 cannot capture structured bindings
    bool known = std::any_of(net.param_entries().begin(), net.param_entries().end(),
                             [&](const ParamEntry& e) { return e.name == name; });
    if (!known) throw IoError(path + ": /params/" + echo(name) + " is not a parameter of this model");
  }
  net.allocate();
  for (const auto& e : net.param_entries()) {
    const auto& values = ckpt.params.at(e.name).values;
    std::copy(values.begin(), values.end(), net.values_of(e.name).begin());
  }
}

void restore_optimizer(Optimizer& opt, const Network& net, const Checkpoint& ckpt, const std::string& path) {
  if (ckpt.optimizer_kind.empty())
    throw IoError(path + ": holds no optimizer state (use --init to start from its weights with a fresh optimizer)");
  if (ckpt.optimizer_kind != opt.kind())
    throw IoError(path + ": optimizer: the checkpoint's is '" + ckpt.optimizer_kind + "', this run's is '" + opt.kind() +
                  "' (use --init to start from its weights with a fresh optimizer)");
  const auto& slots = opt.slot_names();
  for (size_t i = 0; i < slots.size(); ++i)
    for (const auto& p : opt.params()) {
      const std::string key = p.name + "/" + slots[i];
      auto it = ckpt.optimizer.find(key);
      if (it == ckpt.optimizer.end()) throw IoError(path + ": has no /optimizer/" + key);
      if (it->second.shape != net.entry(p.name).shape)
        throw IoError(path + ": /optimizer/" + key + ": expected shape " + net.entry(p.name).shape.str() + ", got " +
                      it->second.shape.str());
      std::copy(it->second.values.begin(), it->second.values.end(),
                opt.slot(i).begin() + static_cast<std::ptrdiff_t>(p.offset));
    }
  if (ckpt.optimizer.size() != slots.size() * opt.params().size())
    throw IoError(path + ": /optimizer holds " + std::to_string(ckpt.optimizer.size()) + " slot arrays, this run expects " +
                  std::to_string(slots.size() * opt.params().size()));
  opt.set_step_count(ckpt.optimizer_steps);
}

}  // namespace stride
