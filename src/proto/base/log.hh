#pragma once
// Minimal structured logging: one JSON object per line on stderr. The level is a process-wide
// atomic so the control plane can change it at run time. Messages are static strings plus
// key/value fields; never log secrets (tokens, keys, passwords).
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace ferry::log {

enum class level : std::uint8_t { error = 0, warn, info, debug, trace };

struct field {
    std::string_view key;
    std::string_view str;
    std::int64_t num = 0;
    bool is_num = false;
    field(std::string_view k, std::string_view v) : key(k), str(v) {}
    field(std::string_view k, const char* v) : key(k), str(v) {}
    field(std::string_view k, std::int64_t v) : key(k), num(v), is_num(true) {}
    field(std::string_view k, int v) : key(k), num(v), is_num(true) {}
    field(std::string_view k, unsigned v) : key(k), num(v), is_num(true) {}
    field(std::string_view k, std::uint64_t v) : key(k), num(static_cast<std::int64_t>(v)), is_num(true) {}
};

extern std::atomic<level> g_level;
inline bool enabled(level l) noexcept { return l <= g_level.load(std::memory_order_relaxed); }
void set_level(level l) noexcept;
// Parses "error|warn|info|debug|trace"; returns false when unknown.
bool parse_level(std::string_view s, level& out) noexcept;
void write(level l, std::string_view msg, std::initializer_list<field> fields = {}) noexcept;

}  // namespace ferry::log

#define FERRY_LOG(lvl, msg, ...)                                                   \
    do {                                                                           \
        if (::ferry::log::enabled(::ferry::log::level::lvl))                       \
            ::ferry::log::write(::ferry::log::level::lvl, msg, {__VA_ARGS__});      \
    } while (0)
