#include "proto/base/result.hh"

namespace ferry {

const char* to_string(errc e) noexcept {
    switch (e) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::out_of_memory: return "out_of_memory";
    case errc::limit_exceeded: return "limit_exceeded";
    case errc::closed: return "closed";
    case errc::timeout: return "timeout";
    case errc::io: return "io";
    case errc::unsupported: return "unsupported";
    case errc::malformed: return "malformed";
    case errc::bad_length: return "bad_length";
    case errc::http_header_too_large: return "http_header_too_large";
    case errc::http_too_many_headers: return "http_too_many_headers";
    case errc::http_bad_request: return "http_bad_request";
    case errc::http_smuggling: return "http_smuggling";
    case errc::http_body_too_large: return "http_body_too_large";
    case errc::http_unsupported_version: return "http_unsupported_version";
    case errc::ws_protocol: return "ws_protocol";
    case errc::ws_bad_utf8: return "ws_bad_utf8";
    case errc::ws_too_big: return "ws_too_big";
    case errc::ws_policy: return "ws_policy";
    case errc::ws_handshake: return "ws_handshake";
    case errc::ws_deflate: return "ws_deflate";
    case errc::ssh_protocol: return "ssh_protocol";
    case errc::ssh_mac: return "ssh_mac";
    case errc::ssh_kex: return "ssh_kex";
    case errc::ssh_auth: return "ssh_auth";
    case errc::ssh_channel: return "ssh_channel";
    case errc::crypto: return "crypto";
    case errc::auth: return "auth";
    case errc::http_uri_too_long: return "http_uri_too_long";
    case errc::http_not_implemented: return "http_not_implemented";
    case errc::ssh_version: return "ssh_version";
    case errc::ssh_host_key: return "ssh_host_key";
    case errc::ws_upgrade_required: return "ws_upgrade_required";
    case errc::token_malformed: return "token_malformed";
    case errc::token_too_large: return "token_too_large";
    case errc::token_alg_not_allowed: return "token_alg_not_allowed";
    case errc::token_unknown_key: return "token_unknown_key";
    case errc::token_key_mismatch: return "token_key_mismatch";
    case errc::token_bad_signature: return "token_bad_signature";
    case errc::token_expired: return "token_expired";
    case errc::token_not_yet_valid: return "token_not_yet_valid";
    case errc::token_bad_issuer: return "token_bad_issuer";
    case errc::token_bad_audience: return "token_bad_audience";
    case errc::token_invalid: return "token_invalid";
    case errc::jwks_invalid: return "jwks_invalid";
    case errc::tls_handshake: return "tls_handshake";
    case errc::tls_verify: return "tls_verify";
    case errc::tls_protocol: return "tls_protocol";
    }
    return "unknown";
}

}  // namespace ferry
