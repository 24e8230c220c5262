#include "framework/core/layer_config.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "framework/core/errors.hpp"
#include "framework/core/limits.hpp"

namespace stride {

using nlohmann::json;

struct LayerConfig::Impl {
  json object;
  std::string where;
};

LayerConfig::LayerConfig() : impl_(std::make_unique<Impl>()) {}
LayerConfig::~LayerConfig() = default;
LayerConfig::LayerConfig(LayerConfig&&) noexcept = default;
LayerConfig& LayerConfig::operator=(LayerConfig&&) noexcept = default;

LayerConfig LayerConfig::from_json_ptr(const void* json_object, const std::string& where) {
  const json& j = *static_cast<const json*>(json_object);
  LayerConfig c;
  c.impl_->where = where;
  if (!j.is_object()) throw ConfigError(where + ": a layer entry must be a JSON object, got " + echo(j.dump()));
  c.impl_->object = j;
  if (!j.contains("type") || !j["type"].is_string())
    throw ConfigError(where + ": layer " + echo(j.dump()) + " has no string field 'type'");
  c.type_ = j["type"].get<std::string>();
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty())
    throw ConfigError(where + ": a '" + echo(c.type_) + "' layer has no string field 'name'");
  c.name_ = j["name"].get<std::string>();
  c.used_ = {"name", "type", "inputs"};
  return c;
}

LayerConfig LayerConfig::parse(const std::string& json_text, const std::string& where) {
  check_json_depth(json_text, where);
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError(where + ": invalid JSON: " + echo(e.what()));
  }
  return from_json_ptr(&j, where);
}

std::string LayerConfig::context() const {
  return impl_->where + ": layer '" + echo(name_) + "' (" + echo(type_) + "): ";
}

bool LayerConfig::has(const std::string& key) const { return impl_->object.contains(key); }

namespace {
[[noreturn]] void bad(const LayerConfig& c, const std::string& key, const std::string& expected, const json& found) {
  throw ConfigError(c.context() + "field '" + echo(key) + "': expected " + expected + ", got " + echo(found.dump()));
}

// Sizes in a spec (channels, features, kernels, strides, pads) are at most 2^31 - 1: a larger one is never a
// real layer, and keeping every factor that small keeps the products layers compute far from overflow.
constexpr int64_t kMaxSpecInt = (int64_t{1} << 31) - 1;

int64_t in_range(const LayerConfig& c, const std::string& key, const json& v) {
  const int64_t x = v.get<int64_t>();
  if (x > kMaxSpecInt || x < -kMaxSpecInt || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMaxSpecInt)))
    bad(c, key, "an integer of magnitude <= " + std::to_string(kMaxSpecInt), v);
  return x;
}
}  // namespace

int64_t LayerConfig::get_int(const std::string& key) const {
  if (!has(key)) throw ConfigError(context() + "missing required field '" + key + "'");
  return get_int(key, 0);
}

int64_t LayerConfig::get_int(const std::string& key, int64_t fallback) const {
  used_.insert(key);
  if (!has(key)) return fallback;
  const json& v = impl_->object[key];
  if (!v.is_number_integer()) bad(*this, key, "an integer", v);
  return in_range(*this, key, v);
}

std::pair<int64_t, int64_t> LayerConfig::get_pair(const std::string& key, std::pair<int64_t, int64_t> fallback) const {
  used_.insert(key);
  if (!has(key)) return fallback;
  const json& v = impl_->object[key];
  if (v.is_number_integer()) return {in_range(*this, key, v), in_range(*this, key, v)};
  if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer())
    return {in_range(*this, key, v[0]), in_range(*this, key, v[1])};
  bad(*this, key, "an integer or [h, w]", v);
}

double LayerConfig::get_float(const std::string& key, double fallback) const {
  used_.insert(key);
  if (!has(key)) return fallback;
  const json& v = impl_->object[key];
  if (!v.is_number()) bad(*this, key, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x)) bad(*this, key, "a finite number", v);
  return x;
}

bool LayerConfig::get_bool(const std::string& key, bool fallback) const {
  used_.insert(key);
  if (!has(key)) return fallback;
  const json& v = impl_->object[key];
  if (!v.is_boolean()) bad(*this, key, "true or false", v);
  return v.get<bool>();
}

std::string LayerConfig::get_string(const std::string& key, const std::string& fallback) const {
  used_.insert(key);
  if (!has(key)) return fallback;
  const json& v = impl_->object[key];
  if (!v.is_string()) bad(*this, key, "a string", v);
  return v.get<std::string>();
}

std::string LayerConfig::get_choice(const std::string& key, const std::string& fallback,
                                    const std::vector<std::string>& allowed) const {
  std::string value = get_string(key, fallback);
  for (const auto& a : allowed)
    if (a == value) return value;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(context() + "field '" + key + "': expected one of " + list + ", got \"" + echo(value) + "\"");
}

void LayerConfig::finish() const {
  std::string unknown;
  for (const auto& item : impl_->object.items())
    if (!used_.count(item.key()) && unknown.size() < kEchoLimit)
      unknown += (unknown.empty() ? "'" : ", '") + echo(item.key(), 64) + "'";
  if (!unknown.empty()) throw ConfigError(context() + "unknown field(s) " + unknown);
}

}  // namespace stride
