#pragma once
// Test helpers for the HTTP/1.1 codec: feeding strategies and comparable summaries of results.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "proto/http1/http1.hh"

namespace ferry::http1::test {

inline bytes B(std::string_view s) { return as_bytes(s); }

inline const char* kind_name(outcome k) {
    switch (k) {
    case outcome::need_more: return "need_more";
    case outcome::payload: return "payload";
    case outcome::done: return "done";
    case outcome::failed: return "failed";
    }
    return "?";
}

// A flat description of a head parse, so two parses can be compared with EXPECT_EQ and a
// failure prints something readable.
inline std::string summary(const progress& p) {
    std::string s = kind_name(p.kind);
    if (p.done()) s += " consumed=" + std::to_string(p.consumed);
    if (p.failed()) {
        s += std::string(" code=") + to_string(p.err.code) + " offset=" + std::to_string(p.err.offset) +
             " at=" + std::to_string(int(p.at)) + " (" + p.err.detail + ")";
    }
    return s;
}

inline std::string summary(const message_head& h) {
    std::string s = std::string("ver=") + (h.ver == version::http_1_1 ? "1.1" : "1.0");
    s += " body=" + std::to_string(int(h.body.kind)) + "/" + std::to_string(h.body.length);
    s += " ka=" + std::to_string(h.keep_alive) + " up=" + std::to_string(h.upgrade);
    s += " size=" + std::to_string(h.size) + " [";
    for (const header& f : h.headers) s += std::string(f.name) + "=" + std::string(f.value) + ";";
    return s + "]";
}

inline std::string summary(const progress& p, const request_parser& ps) {
    std::string s = summary(p);
    if (p.done()) {
        const request_head& h = ps.head();
        s += " " + std::string(h.method) + " " + std::string(h.target) + " host=" + std::string(h.host) +
             " expect=" + std::to_string(h.expect_continue) + " " + summary(static_cast<const message_head&>(h));
    }
    return s;
}

inline std::string summary(const progress& p, const response_parser& ps) {
    std::string s = summary(p);
    if (p.done()) {
        const response_head& h = ps.head();
        s += " " + std::to_string(h.status_code) + " '" + std::string(h.reason) + "' " +
             summary(static_cast<const message_head&>(h));
    }
    return s;
}

// Whole input at once.
template <class Parser>
progress parse_whole(Parser& ps, std::string_view s) {
    ps.reset();
    return ps.parse(B(s));
}

// Growing prefixes of the same buffer (stable address): first k bytes, then everything.
template <class Parser>
progress parse_split(Parser& ps, std::string_view s, std::size_t k) {
    ps.reset();
    progress p = ps.parse(B(s.substr(0, k)));
    if (!p.need_more()) return p;
    return ps.parse(B(s));
}

// One byte more per call.
template <class Parser>
progress parse_bytewise(Parser& ps, std::string_view s) {
    ps.reset();
    progress p;
    for (std::size_t k = 0; k <= s.size(); ++k) {
        p = ps.parse(B(s.substr(0, k)));
        if (!p.need_more()) return p;
    }
    return p;
}

// Body decode of `in` fed in pieces of `step` bytes; collects payload. Returns the final
// progress with consumed = total bytes of `in` used.
template <class Decoder>
progress decode_all(Decoder& d, std::string_view in, std::size_t step, std::string& payload) {
    std::size_t pos = 0;
    progress last;
    while (true) {
        std::size_t end = std::min(in.size(), pos + step);
        std::string_view piece = in.substr(pos, end - pos);
        std::size_t used = 0;
        for (;;) {
            progress r = d.decode(B(piece.substr(used)));
            if (!r.data.empty()) payload.append(as_string(r.data));
            used += r.consumed;
            last = r;
            if (r.kind == outcome::payload) continue;
            break;
        }
        pos += used;
        if (last.kind != outcome::need_more || end == in.size()) {
            last.consumed = pos;
            return last;
        }
    }
}

}  // namespace ferry::http1::test
