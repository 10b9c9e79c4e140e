// Fuzz target `ws_refusal`: how the WebSocket client reads a server's refusal of its upgrade
// (link::parse_refusal over a head parsed by ws::parse_response_head): the relay's 401/403/
// 429/503 answers with a JSON error body and Retry-After, or anything a hostile server sends.
//
// Input: an HTTP response head followed by a body, split into chunks whose first byte gives
// their length (STYLE 12); the head parser sees every growing prefix, like a client reading a
// socket, and must answer "incomplete" until the head is complete.
// Invariants (a violation traps): code and message are printable ASCII within their bounds;
// Retry-After is at most a day; the status is the parsed one.
#include <array>
#include <cstdint>
#include <string>

#include "link/ws_client.hh"
#include "proto/ws/handshake.hh"

using namespace ferry;

#define CHECK(c)                    \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

namespace {
bool printable(const std::string& s, std::size_t max) {
    if (s.size() > max) return false;
    for (char c : s) {
        if (c < ' ' || c > '~') return false;
    }
    return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string buf;
    std::size_t i = 0, used = 0;
    std::array<ws::header, 64> storage;
    ws::response_head resp;
    while (i < size) {
        std::size_t n = data[i++];
        n = std::min(n, size - i);
        buf.append(reinterpret_cast<const char*>(data + i), n);
        i += n;
        if (used == 0) {
            auto r = ws::parse_response_head(as_bytes(buf), resp, storage);
            if (!r) return 0;
            used = *r;
        }
    }
    if (used == 0) return 0;
    // Re-parse: the views must point into the final buffer.
    auto r = ws::parse_response_head(as_bytes(buf), resp, storage);
    CHECK(r && *r == used);
    std::string body = buf.substr(used, 4096);
    link::ws_refusal f = link::parse_refusal(resp.status, resp.headers, body);
    CHECK(f.status == resp.status);
    CHECK(f.retry_after <= 86400);
    CHECK(printable(f.code, 64));
    CHECK(printable(f.message, 256));
    return 0;
}
