#pragma once
// The HTTP/1.1 upgrade handshake of RFC 6455 §4, both roles, sans-IO.
//
// Input is a parsed head as views (`request_head` / `response_head`), so any HTTP parser can
// feed it: the relay adapts its http1 parser's output (same {name, value} header shape); the
// small strict head parser below serves the client side and the `ws_handshake` fuzzer.
// Output is appended to a caller-owned buffer_chain. Nothing here is on the data path; it may
// allocate (std::string for the accept key and extension values).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ws/deflate.hh"

namespace ferry::ws {

struct header {
    std::string_view name;
    std::string_view value;  // OWS trimmed
};

struct request_head {
    std::string_view method;
    std::string_view target;
    std::string_view version;  // "HTTP/1.1"
    std::span<const header> headers;
};

struct response_head {
    std::string_view version;
    int status = 0;
    std::string_view reason;
    std::span<const header> headers;
};

// ---- primitives --------------------------------------------------------------------------------

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + 258EAFA5-...)) (§4.2.2).
std::string accept_key(std::string_view key);
// A Sec-WebSocket-Key from 16 random bytes supplied by the caller (no RNG in the codec).
std::string make_key(std::span<const std::byte, 16> random);
// Is `key` the base64 encoding of exactly 16 bytes (24 characters, "==" padding, canonical)?
bool valid_key(std::string_view key) noexcept;

// ASCII case-insensitive equality; does the comma-separated list `value` hold `token`?
bool iequals(std::string_view a, std::string_view b) noexcept;
bool has_token(std::string_view value, std::string_view token) noexcept;

// ---- server ------------------------------------------------------------------------------------

struct server_config {
    deflate_config deflate{};  // off by default
};

// An upgrade request that passed every check.
struct upgrade_request {
    std::string_view key;                    // view into the request
    std::optional<deflate_params> deflate;   // negotiated permessage-deflate, if any
    std::string extensions;                  // Sec-WebSocket-Extensions to answer ("" = none)
};

// Does the request ask for a WebSocket upgrade at all (Upgrade: websocket)? Lets a router send
// ordinary requests elsewhere before calling check_upgrade_request.
bool is_upgrade_request(const request_head& req) noexcept;

// Validates an upgrade request (RFC 6455 §4.2.1): GET, HTTP/1.1, Host, Upgrade holding the
// "websocket" token, Connection holding the "upgrade" token (case-insensitive, any of several
// fields), exactly one Sec-WebSocket-Version "13", exactly one Sec-WebSocket-Key that is
// base64 of 16 bytes; negotiates permessage-deflate per `cfg`.
// Errors: ws_upgrade_required (answer 426): no websocket Upgrade, or a missing/other version;
// ws_handshake (answer 400): everything else. `detail` says which check failed.
result<upgrade_request> check_upgrade_request(const request_head& req, const server_config& cfg);

// Does the request offer subprotocol `name` in its Sec-WebSocket-Protocol field(s)? Names
// compare exactly (case-sensitive).
bool offers_protocol(const request_head& req, std::string_view name) noexcept;

// The HTTP status that answers a failed check_upgrade_request: 426 or 400.
int handshake_status(const error& e) noexcept;

// The 101 response. `protocol`: the chosen subprotocol ("" = none; must be one the client
// offered). `extra_headers`: preformatted "Name: value\r\n" lines, appended as they are.
void write_upgrade_response(buffer_chain& out, const upgrade_request& up,
                            std::string_view protocol = {}, std::string_view extra_headers = {});

// The 400/426 response for a failed check (426 carries Upgrade and Sec-WebSocket-Version: 13),
// with a small JSON body {"error":{"code":...,"message":...}} and Connection: close.
void write_reject_response(buffer_chain& out, const error& e);

// ---- client ------------------------------------------------------------------------------------

struct client_request {
    std::string_view host;             // Host field value (authority)
    std::string_view target = "/";
    std::string_view origin{};         // "" = no Origin field
    std::string_view protocols{};      // comma-separated subprotocols to offer ("" = none)
    std::string_view extra_headers{};  // preformatted "Name: value\r\n" lines (Authorization...)
    deflate_config deflate{};
};

// The upgrade request; `key` from make_key().
void write_upgrade_request(buffer_chain& out, const client_request& req, std::string_view key);

struct upgrade_response {
    std::optional<deflate_params> deflate;  // what the server agreed to
    std::string_view protocol;              // the server's chosen subprotocol ("" = none)
};

// Validates the server's answer (RFC 6455 §4.1, RFC 7692 §7.1): status 101, HTTP/1.1,
// Upgrade websocket, Connection upgrade, Sec-WebSocket-Accept matching `key`, extensions only
// as offered, a subprotocol only from our offer (exact match). Any failure -> ws_handshake (fail the
// connection; the status is in resp.status for the caller's message).
result<upgrade_response> check_upgrade_response(const response_head& resp, std::string_view key,
                                                const client_request& req);

// ---- a small strict HTTP/1.1 head parser -------------------------------------------------------
// For the client side and the fuzzer; the relay's server side uses src/proto/http1.
// Strict: CRLF line ends only (bare LF rejected), no obs-fold, header names are tokens with the
// colon right after them, no control characters in values, HTTP/1.x versions only.

struct head_limits {
    std::size_t max_bytes = 8192;  // whole head including the empty line
};

// Parses a complete head from the start of `in`. Returns the bytes it used (the head's length;
// what follows belongs to the WebSocket), or 0 when `in` holds no complete head yet (call again
// with more bytes). Headers go to `storage` (their count is storage.size() at most).
// Errors: ws_handshake (malformed), limit_exceeded (head over max_bytes, or more headers than
// `storage` holds).
result<std::size_t> parse_request_head(bytes in, request_head& out, std::span<header> storage,
                                       const head_limits& lim = {});
result<std::size_t> parse_response_head(bytes in, response_head& out, std::span<header> storage,
                                        const head_limits& lim = {});

}  // namespace ferry::ws
