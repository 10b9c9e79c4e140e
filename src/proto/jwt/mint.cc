#include "proto/jwt/mint.hh"

#include "proto/jwt/base64url.hh"
#include "proto/jwt/json.hh"
#include "proto/jwt/sig.hh"

namespace ferry::jwt {

namespace {
constexpr std::int64_t kMaxTtl = 10LL * 366 * 86400;

bool ok_string(std::string_view s, std::size_t max) { return s.size() <= max && json::valid_utf8(s) && s.find('\0') == std::string_view::npos; }
}  // namespace

result<std::string> mint_hs256(bytes secret, const mint_request& req, unix_time now) {
    const limits lim;
    if (secret.size() < 32) return fail(errc::jwks_invalid, "HS256 secret shorter than 32 bytes");
    if (req.sub.empty() || !ok_string(req.sub, lim.max_sub)) return fail(errc::invalid_argument, "sub must be non-empty UTF-8 within the limit");
    if (req.ttl <= 0 || req.ttl > kMaxTtl) return fail(errc::invalid_argument, "ttl out of range");
    if (now < 0 || now > 253402300799 - kMaxTtl) return fail(errc::invalid_argument, "now out of range");
    if (!ok_string(req.iss, lim.max_string) || !ok_string(req.aud, lim.max_string))
        return fail(errc::invalid_argument, "iss/aud must be UTF-8 within the limit");
    if (!ok_string(req.kid, lim.max_kid)) return fail(errc::invalid_argument, "kid must be UTF-8 within the limit");
    if (!ok_string(req.scope, lim.max_string)) return fail(errc::invalid_argument, "scope must be UTF-8 within the limit");
    if (req.tunnels.size() > lim.max_tunnels) return fail(errc::invalid_argument, "too many tunnels");
    for (const auto& t : req.tunnels)
        if (t.empty() || !ok_string(t, lim.max_tunnel_name)) return fail(errc::invalid_argument, "bad tunnel name");

    std::string header = R"({"alg":"HS256","typ":"JWT")";
    if (!req.kid.empty()) {
        header += ",\"kid\":";
        json::append_string(header, req.kid);
    }
    header += '}';

    std::string body = "{\"sub\":";
    json::append_string(body, req.sub);
    body += ",\"iat\":" + std::to_string(now) + ",\"exp\":" + std::to_string(now + req.ttl);
    if (!req.iss.empty()) {
        body += ",\"iss\":";
        json::append_string(body, req.iss);
    }
    if (!req.aud.empty()) {
        body += ",\"aud\":";
        json::append_string(body, req.aud);
    }
    if (!req.tunnels.empty()) {
        body += ",\"ferry_tunnels\":[";
        for (std::size_t i = 0; i < req.tunnels.size(); ++i) {
            if (i) body += ',';
            json::append_string(body, req.tunnels[i]);
        }
        body += ']';
    }
    if (!req.scope.empty()) {
        body += ",\"scope\":";
        json::append_string(body, req.scope);
    }
    body += '}';
    if (body.size() > lim.max_payload) return fail(errc::invalid_argument, "claims larger than the payload limit");

    std::string token;
    base64url::encode(as_bytes(header), token);
    token += '.';
    base64url::encode(as_bytes(body), token);
    detail::digest mac{};
    FERRY_TRY(h, detail::hmac_sha256(secret, as_bytes(token), mac));
    token += '.';
    base64url::encode(mac, token);
    detail::wipe(mac);
    return token;
}

}  // namespace ferry::jwt
