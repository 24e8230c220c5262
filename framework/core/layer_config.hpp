#pragma once
// One layer's entry of a model spec, as the layer's from_config() reads it. Every getter records the key
// as used; finish() then rejects keys nobody read, so a typo like "kernal" is an error, not a silent default.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace stride {

class LayerConfig {
 public:
  // Parses one JSON object, e.g. {"name": "conv1", "type": "conv2d", "out_channels": 32, "kernel": 5}.
  // `where` prefixes error messages (the spec file name).
  static LayerConfig parse(const std::string& json_text, const std::string& where = "spec");
  // Wraps an already-parsed object (an nlohmann::json*, passed opaquely to keep JSON out of headers).
  static LayerConfig from_json_ptr(const void* json_object, const std::string& where);
  ~LayerConfig();
  LayerConfig(LayerConfig&&) noexcept;
  LayerConfig& operator=(LayerConfig&&) noexcept;

  const std::string& name() const { return name_; }
  const std::string& type() const { return type_; }
  bool has(const std::string& key) const;

  int64_t get_int(const std::string& key) const;  // required
  int64_t get_int(const std::string& key, int64_t fallback) const;
  // An int (used for both) or a two-element array [h, w].
  std::pair<int64_t, int64_t> get_pair(const std::string& key, std::pair<int64_t, int64_t> fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  // One of `allowed`; the error lists them.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& allowed) const;

  // Throws ConfigError naming the layer and every key that no getter asked for.
  void finish() const;
  // "spec: layer 'conv1' (conv2d): " for messages.
  std::string context() const;

 private:
  LayerConfig();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string name_, type_;
  mutable std::set<std::string> used_;
};

}  // namespace stride
