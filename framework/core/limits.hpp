#pragma once
// Limits checked before anything is allocated: sizes whose product must fit in int64, the memory a run may
// plan for (--max-memory), the nesting depth of JSON text, and how much of an untrusted value an error
// message may repeat. Every size that comes from a file, a spec or a flag passes through one of these before
// it reaches an allocation (docs/reliability.md).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stride {

// a * b and a + b for non-negative sizes, or nullopt when the result does not fit in int64 (or an operand is
// negative).
std::optional<int64_t> mul_sizes(int64_t a, int64_t b);
std::optional<int64_t> add_sizes(int64_t a, int64_t b);

// An untrusted value made safe to repeat in a message: bytes outside printable ASCII are escaped (\n, \x01,
// ...), and anything past `max` characters is cut with "... (N bytes)" saying how long it was.
inline constexpr size_t kEchoLimit = 200;
std::string echo(std::string_view value, size_t max = kEchoLimit);

// JSON nesting deeper than this is rejected before parsing: nlohmann's dump(), diff() and destructors recurse
// once per level, so a few hundred thousand '[' would overflow the stack.
inline constexpr int kMaxJsonDepth = 64;
// Throws ConfigError "<where>: JSON nested deeper than 64 levels (at byte N)" for text whose arrays and
// objects nest deeper than max_depth (brackets inside strings do not count).
void check_json_depth(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);

// Bytes of physical memory (sysconf), or 0 when unknown.
int64_t physical_memory_bytes();
// The memory a process may plan to use (--max-memory); default: half of physical memory.
int64_t memory_limit();
void set_memory_limit(int64_t bytes);
// Throws ResourceError "<what> needs N bytes (12.3 GiB), over the --max-memory limit of M (...)" when bytes
// exceed memory_limit(), or is negative (an overflowed computation).
void check_memory(int64_t bytes, const std::string& what);
// "512M", "8G", "1.5G", "1000000" (bytes), with K/M/G/T suffixes in powers of 1024; throws UsageError
// naming `flag` otherwise.
int64_t parse_byte_size(const std::string& text, const std::string& flag);
// "1.5 GiB"-style text for messages.
std::string human_bytes(int64_t bytes);

}  // namespace stride
