// Fuzz target `ws_handshake`: the upgrade handshake of src/proto/ws — the strict head parser,
// server-side request validation with permessage-deflate negotiation, and client-side response
// validation.
//
// Input: byte 0 chooses the mode and configuration, the rest is the head, fed as chunks whose
// first byte gives their length (STYLE 12): the parser is called on every growing prefix, as a
// client reading a socket would, and must answer "incomplete" until the head is complete.
//   bit 0   0: a request (server side), 1: a response (client side)
//   bit 1   permessage-deflate enabled in our config
//   bit 2   our config asks for no context takeover (both directions)
//   bit 3   our config limits window bits (server 10, client 11)
//   bit 4   small head limit (256 bytes) and 4 header slots
// Invariants (a violation traps): the parser's answer on a prefix is consistent with the full
// input; parsed views lie inside the input; an accepted request has a valid key and its 101
// response parses back and is accepted by a client; a negotiated extension response is
// accepted by a client with the same parameters; rejections map to 400/426.
#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "proto/ws/handshake.hh"

using namespace ferry;
using namespace ferry::ws;

namespace {

#define CHECK(c)                   \
    do {                           \
        if (!(c)) __builtin_trap(); \
    } while (0)

bool inside(std::string_view v, const std::string& buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

deflate_config make_cfg(std::uint8_t cfg) {
    deflate_config d;
    d.enabled = (cfg & 2) != 0;
    d.server_no_context_takeover = d.client_no_context_takeover = (cfg & 4) != 0;
    if (cfg & 8) {
        d.server_max_window_bits = 10;
        d.client_max_window_bits = 11;
    }
    return d;
}

void server_side(const std::string& buf, std::size_t consumed, const request_head& req, std::uint8_t cfg) {
    CHECK(inside(req.method, buf) && inside(req.target, buf) && inside(req.version, buf));
    for (const header& h : req.headers) CHECK(inside(h.name, buf) && inside(h.value, buf));
    (void)consumed;
    server_config sc;
    sc.deflate = make_cfg(cfg);
    auto up = check_upgrade_request(req, sc);
    if (!up) {
        const int st = handshake_status(up.err());
        CHECK(st == 400 || st == 426);
        CHECK((st == 426) == (up.code() == errc::ws_upgrade_required));
        buffer_chain out;
        write_reject_response(out, up.err());
        std::string r = out.to_string();
        std::array<header, 16> hs;
        response_head rh;
        auto pr = parse_response_head(as_bytes(r), rh, hs);
        CHECK(pr && *pr > 0 && rh.status == st);
        return;
    }
    CHECK(valid_key(up->key));
    CHECK(up->deflate.has_value() == !up->extensions.empty());
    CHECK(!up->deflate || sc.deflate.enabled);
    // Our 101 must satisfy a client that made exactly this request (key, and an extension
    // answer any client offering permessage-deflate with default parameters would accept
    // unless it asked for more than the server granted).
    buffer_chain out;
    write_upgrade_response(out, *up);
    std::string r = out.to_string();
    std::array<header, 16> hs;
    response_head rh;
    auto pr = parse_response_head(as_bytes(r), rh, hs);
    CHECK(pr && *pr == r.size() && rh.status == 101);
    client_request cr;
    cr.host = "h";
    cr.deflate.enabled = up->deflate.has_value();
    auto cu = check_upgrade_response(rh, up->key, cr);
    CHECK(cu);
    if (up->deflate) {
        CHECK(cu->deflate.has_value());
        CHECK(cu->deflate->server_no_context_takeover == up->deflate->server_no_context_takeover);
        CHECK(cu->deflate->server_max_window_bits == up->deflate->server_max_window_bits);
        CHECK(cu->deflate->client_max_window_bits == up->deflate->client_max_window_bits);
    }
}

void client_side(const std::string& buf, const response_head& resp, std::uint8_t cfg) {
    CHECK(inside(resp.version, buf) && inside(resp.reason, buf));
    for (const header& h : resp.headers) CHECK(inside(h.name, buf) && inside(h.value, buf));
    client_request cr;
    cr.host = "relay.example";
    cr.protocols = "ferry, chat";
    cr.deflate = make_cfg(cfg);
    const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
    auto cu = check_upgrade_response(resp, key, cr);
    if (!cu) {
        CHECK(cu.code() == errc::ws_handshake);
        return;
    }
    CHECK(resp.status == 101);
    CHECK(cu->protocol.empty() || cu->protocol == "ferry" || cu->protocol == "chat");
    if (cu->deflate) {
        CHECK(cr.deflate.enabled);
        CHECK(cu->deflate->client_max_window_bits <= std::max<std::uint8_t>(8, cr.deflate.client_max_window_bits));
        CHECK(cu->deflate->server_max_window_bits >= 8 && cu->deflate->server_max_window_bits <= 15);
        if (cr.deflate.server_no_context_takeover) CHECK(cu->deflate->server_no_context_takeover);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t cfg = data[0];
    std::string all;
    std::vector<std::size_t> cuts;  // prefix lengths at which the parser is asked
    for (std::size_t pos = 1; pos < size;) {
        std::size_t n = data[pos];
        ++pos;
        n = std::min(n, size - pos);
        all.append(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
        cuts.push_back(all.size());
    }
    head_limits lim;
    std::size_t slots = 32;
    if (cfg & 16) {
        lim.max_bytes = 256;
        slots = 4;
    }
    std::array<header, 32> storage;
    const std::span<header> st(storage.data(), slots);
    const bool response = cfg & 1;
    for (std::size_t cut : cuts) {
        // A fresh copy of exactly the prefix: views must stay inside it.
        std::string buf = all.substr(0, cut);
        request_head rq;
        response_head rs;
        auto r = response ? parse_response_head(as_bytes(buf), rs, st, lim)
                          : parse_request_head(as_bytes(buf), rq, st, lim);
        if (!r) return 0;            // malformed: fine, and a longer prefix cannot fix it
        if (*r == 0) continue;       // incomplete: more bytes needed
        CHECK(*r >= 4 && *r <= buf.size());
        CHECK(buf.compare(*r - 4, 4, "\r\n\r\n") == 0 || buf.compare(*r - 2, 2, "\r\n") == 0);
        if (response) {
            client_side(buf, rs, cfg);
        } else {
            server_side(buf, *r, rq, cfg);
        }
        return 0;
    }
    return 0;
}
