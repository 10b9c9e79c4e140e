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

// Bounds how often one kind of line is written, so that a peer repeating a refused action cannot
// turn the log into its amplifier: at most `burst` lines per `window_ms`; the lines held back are
// counted and the count goes with the next line that passes (a `suppressed` field). Time is the
// caller's (a shard's clock) and the state is not shared: one gate per kind of line per thread.
class gate {
public:
    constexpr gate(unsigned burst, std::int64_t window_ms) noexcept : burst_(burst), window_(window_ms) {}
    // True when a line may be written at `now_ms`; `suppressed` = lines held back since the last
    // one that passed.
    bool pass(std::int64_t now_ms, std::uint64_t& suppressed) noexcept {
        if (now_ms - start_ >= window_ || now_ms < start_) {
            start_ = now_ms;
            used_ = 0;
        }
        if (used_ >= burst_) {
            ++held_;
            return false;
        }
        ++used_;
        suppressed = held_;
        held_ = 0;
        return true;
    }
    std::uint64_t held() const noexcept { return held_; }

private:
    unsigned burst_;
    std::int64_t window_;
    std::int64_t start_ = INT64_MIN / 2;
    unsigned used_ = 0;
    std::uint64_t held_ = 0;
};

}  // namespace ferry::log

#define FERRY_LOG(lvl, msg, ...)                                                   \
    do {                                                                           \
        if (::ferry::log::enabled(::ferry::log::level::lvl))                       \
            ::ferry::log::write(::ferry::log::level::lvl, msg, {__VA_ARGS__});      \
    } while (0)

// FERRY_LOG through a log::gate: written when the level is on and the gate lets it pass, with a
// `suppressed` field counting the lines the gate held back since the last one.
#define FERRY_LOG_GATED(gate, now_ms, lvl, msg, ...)                                         \
    do {                                                                                     \
        if (::ferry::log::enabled(::ferry::log::level::lvl)) {                               \
            std::uint64_t ferry_held_ = 0;                                                   \
            if ((gate).pass((now_ms), ferry_held_))                                          \
                ::ferry::log::write(::ferry::log::level::lvl, msg,                           \
                                    {__VA_OPT__(__VA_ARGS__, ){"suppressed", ferry_held_}}); \
        }                                                                                    \
    } while (0)
