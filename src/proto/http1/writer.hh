#pragma once
// Serialising request and response heads into a buffer_chain, with the relay's header rewriting
// (RFC 9110 §7.6.1: a proxy removes hop-by-hop fields before forwarding).
//
// Every string written is validated first (token method and names, visible-ASCII target, no CR,
// LF, NUL or other CTL in values and reason), so a value that came from configuration or from
// another protocol cannot inject a line. On failure nothing is appended.
// The head is written with one prepare()/commit() into the chain (one contiguous fragment).
#include <cstdint>
#include <span>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/http1/parser.hh"
#include "proto/http1/types.hh"

namespace ferry::http1 {

// True for the fields that describe one connection and must not be forwarded: Connection,
// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, and any field named in
// the Connection field value `connection_value` (case-insensitive). When a message has several
// Connection lines, call it once per line (or use a rewrite, which does).
bool is_hop_by_hop(std::string_view name, std::string_view connection_value = {}) noexcept;

// How to rewrite the header list while writing it.
struct rewrite {
    // Drop hop-by-hop fields (see is_hop_by_hop, with every Connection line of the message).
    bool strip_hop_by_hop = true;
    // ... except Transfer-Encoding: the relay forwards bodies verbatim, chunked framing included,
    // so the field that announces it goes along. Set false when re-framing the body.
    bool keep_transfer_encoding = true;
    // Further fields to drop, case-insensitive (e.g. "authorization", "cookie").
    std::span<const std::string_view> drop{};
    // Fields appended after the kept ones, in order (e.g. X-Forwarded-For, Connection: close).
    std::span<const header> add{};
};

// "METHOD SP target SP HTTP/1.x CRLF" fields "CRLF".
status write_request_head(buffer_chain& out, std::string_view method, std::string_view target,
                          version v, std::span<const header> headers, const rewrite& rw = {});
// "HTTP/1.x SP ddd SP reason CRLF" fields "CRLF". status_code must be 100..999.
status write_response_head(buffer_chain& out, version v, int status_code, std::string_view reason,
                           std::span<const header> headers, const rewrite& rw = {});

// The same from parsed heads; `target`, when not empty, replaces h.target (the relay forwards
// /t/<tunnel>/<path> as /<path>).
status write_head(buffer_chain& out, const request_head& h, const rewrite& rw = {},
                  std::string_view target = {});
status write_head(buffer_chain& out, const response_head& h, const rewrite& rw = {});

}  // namespace ferry::http1
