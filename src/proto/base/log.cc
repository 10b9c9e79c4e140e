#include "proto/base/log.hh"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace ferry::log {

std::atomic<level> g_level{level::info};

void set_level(level l) noexcept { g_level.store(l, std::memory_order_relaxed); }

bool parse_level(std::string_view s, level& out) noexcept {
    static constexpr std::string_view names[] = {"error", "warn", "info", "debug", "trace"};
    for (unsigned i = 0; i < 5; ++i) {
        if (s == names[i]) {
            out = static_cast<level>(i);
            return true;
        }
    }
    return false;
}

namespace {
void append_escaped(std::string& out, std::string_view s) {
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
}
}  // namespace

void write(level l, std::string_view msg, std::initializer_list<field> fields) noexcept {
    static constexpr const char* names[] = {"error", "warn", "info", "debug", "trace"};
    try {
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm {};
        gmtime_r(&ts.tv_sec, &tm);
        char tbuf[64];
        std::snprintf(tbuf, sizeof tbuf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
        std::string line;
        line.reserve(128);
        line += "{\"ts\":\"";
        line += tbuf;
        line += "\",\"level\":\"";
        line += names[static_cast<unsigned>(l)];
        line += "\",\"msg\":\"";
        append_escaped(line, msg);
        line += '"';
        for (const field& f : fields) {
            line += ",\"";
            append_escaped(line, f.key);
            line += "\":";
            if (f.is_num) {
                line += std::to_string(f.num);
            } else {
                line += '"';
                append_escaped(line, f.str);
                line += '"';
            }
        }
        line += "}\n";
        // One write(2) per line so concurrent shards do not interleave within a line.
        ssize_t r = ::write(2, line.data(), line.size());
        (void)r;
    } catch (...) {
        // Logging must never take the process down.
    }
}

}  // namespace ferry::log
