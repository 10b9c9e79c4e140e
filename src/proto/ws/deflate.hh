#pragma once
// permessage-deflate (RFC 7692): negotiation of the Sec-WebSocket-Extensions offer and response
// for both roles, and the agreed parameters the decoder and encoder are built with.
//
// Off by default: the relay's WebSocket carries SSH, whose bytes are encrypted and do not
// compress, so deflate would only cost CPU and 2 zlib contexts (~300 KiB) per connection.
// Enable it in `deflate_config` for endpoints that carry compressible text.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proto/base/result.hh"

namespace ferry::ws {

// What both ends agreed (RFC 7692 §7.1). "server_*" parameters govern the server's sending
// direction (the client's inflater), "client_*" the client's.
struct deflate_params {
    bool server_no_context_takeover = false;
    bool client_no_context_takeover = false;
    std::uint8_t server_max_window_bits = 15;  // 8..15
    std::uint8_t client_max_window_bits = 15;  // 8..15

    bool operator==(const deflate_params&) const = default;
};

// What this endpoint is willing to agree to.
struct deflate_config {
    bool enabled = false;
    // Server: always answer with server_no_context_takeover (less memory kept between
    // messages, worse ratio). Client: ask for it.
    bool server_no_context_takeover = false;
    // Server: make the client reset its context after each message. Client: offer it.
    bool client_no_context_takeover = false;
    // Server: the largest window the server compresses with (answered when < 15 or when the
    // client asked). Client: ask the server for at most this window (sent when < 15).
    std::uint8_t server_max_window_bits = 15;
    // Server: limit the client's window to this when the client allows it (an offer without
    // client_max_window_bits cannot be limited; with a value < 15 here such offers are
    // declined). Client: the largest window we compress with; always offered.
    std::uint8_t client_max_window_bits = 15;
    // zlib compression level (1 fastest .. 9 smallest) and memLevel (1..9) of the sender.
    int level = 6;
    int mem_level = 8;
    // Data messages smaller than this are sent uncompressed (RSV1 is per message).
    std::size_t min_size = 32;
};

// Server: picks the first acceptable permessage-deflate offer from the request's
// Sec-WebSocket-Extensions field values (each may hold several comma-separated offers).
// Returns the agreed parameters and sets `response` to the value of the response's
// Sec-WebSocket-Extensions field, or returns nullopt (no extension, `response` cleared) when
// disabled, not offered, or every offer is unacceptable (unknown or repeated parameters,
// values out of range, or a window we cannot honour). Never fails the handshake: an
// unacceptable offer just means no compression (RFC 7692 §5).
std::optional<deflate_params> negotiate_deflate(std::span<const std::string_view> field_values,
                                                const deflate_config& cfg, std::string& response);

// Client: the Sec-WebSocket-Extensions value offering permessage-deflate per `cfg`
// (empty when !cfg.enabled).
std::string deflate_offer(const deflate_config& cfg);

// Client: validates the server's Sec-WebSocket-Extensions field values against the offer made
// from `cfg`. No field (empty span or only empty values) -> nullopt (no compression). Anything
// the offer did not allow (another extension, a second permessage-deflate, a parameter we did
// not offer or a larger window than offered, a server_no_context_takeover we asked for but did
// not get) -> errc::ws_handshake: the client must fail the connection (RFC 7692 §7.1).
result<std::optional<deflate_params>> accept_deflate_response(
    std::span<const std::string_view> field_values, const deflate_config& cfg);

// The zlib window bits to use for a negotiated value. zlib cannot compress with a 256-byte
// window (raw deflate refuses windowBits 8); its 512-byte window never emits a distance above
// 250 (w_size - MIN_LOOKAHEAD), so 9 honours an agreed 8 exactly.
constexpr int zlib_window_bits(std::uint8_t negotiated) noexcept {
    return negotiated < 9 ? 9 : negotiated;
}

}  // namespace ferry::ws
