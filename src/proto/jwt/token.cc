#include "proto/jwt/token.hh"

#include <algorithm>
#include <cmath>

#include "proto/jwt/base64url.hh"
#include "proto/jwt/sig.hh"

namespace ferry::jwt {

bool claims::grants(std::string_view tunnel) const noexcept {
    for (const auto& t : tunnels)
        if (t == tunnel) return true;
    return false;
}

bool claims::has_scope(std::string_view token) const noexcept {
    if (token.empty()) return false;
    std::string_view rest = scope;
    while (!rest.empty()) {
        const std::size_t sp = rest.find(' ');
        if (rest.substr(0, sp) == token) return true;
        if (sp == std::string_view::npos) break;
        rest.remove_prefix(sp + 1);
    }
    return false;
}

namespace {

// 9999-12-31T23:59:59Z: far beyond any real token, and small enough that exp + leeway and
// now + leeway never overflow.
constexpr std::int64_t kMaxTime = 253402300799;
constexpr std::int64_t kMaxLeeway = 365 * 86400;

struct parts {
    std::string_view header64, payload64, sig64, signing_input;
};

result<parts> split(std::string_view token, const limits& lim) {
    if (token.size() > lim.max_token) return fail(errc::token_too_large, "token longer than the limit");
    if (token.empty()) return fail(errc::token_malformed, "empty token");
    std::size_t d1 = token.find('.');
    if (d1 == std::string_view::npos) return fail(errc::token_malformed, "not a compact JWS (no '.')");
    std::size_t d2 = token.find('.', d1 + 1);
    if (d2 == std::string_view::npos) return fail(errc::token_malformed, "not a compact JWS (two parts)", std::uint32_t(d1));
    if (token.find('.', d2 + 1) != std::string_view::npos)
        return fail(errc::token_malformed, "not a compact JWS (more than three parts; JWE is not supported)", std::uint32_t(d2));
    parts p;
    p.header64 = token.substr(0, d1);
    p.payload64 = token.substr(d1 + 1, d2 - d1 - 1);
    p.sig64 = token.substr(d2 + 1);
    p.signing_input = token.substr(0, d2);
    if (p.header64.empty()) return fail(errc::token_malformed, "empty header");
    if (p.payload64.empty()) return fail(errc::token_malformed, "empty payload");
    return p;
}

// Decodes one part into `out`, bounded by `max` decoded bytes.
status decode_part(std::string_view text, std::size_t max, std::string& out, const char* too_large,
                   std::uint32_t base) {
    std::size_t n = base64url::decoded_size(text.size());
    if (n == SIZE_MAX) return fail(errc::token_malformed, "bad base64url length", base + std::uint32_t(text.size()));
    if (n > max) return fail(errc::token_too_large, too_large);
    out.resize(n);
    auto r = base64url::decode(text, mut_bytes(reinterpret_cast<std::byte*>(out.data()), out.size()));
    if (!r) return fail(errc::token_malformed, r.err().detail, base + r.err().offset);
    return {};
}

json::limits json_limits(const limits& lim, std::uint32_t max_values) {
    json::limits j;
    j.max_depth = lim.max_depth;
    j.max_members = lim.max_claims;
    j.max_values = max_values;
    j.max_string = lim.max_string;
    return j;
}

// JSON errors keep their own detail ("duplicate member name", ...) and offset (into the decoded
// part); limit overruns become token_too_large.
failure json_failure(const error& e) {
    return fail(e.code == errc::limit_exceeded ? errc::token_too_large : errc::token_malformed, e.detail, e.offset);
}

struct header_info {
    alg a = alg::hs256;
    std::string_view kid;
    bool has_kid = false;
};

// Header checks up to and including the allow-list (steps 1 and 2).
result<header_info> read_header(const json::document& d, const limits& lim, const alg_set* allowed) {
    const json::node& h = d.root();
    if (h.k != json::kind::object) return fail(errc::token_malformed, "header is not a JSON object");
    const json::node* a = d.find(h, "alg");
    if (!a) return fail(errc::token_malformed, "header has no alg");
    if (a->k != json::kind::string) return fail(errc::token_malformed, "header alg is not a string");
    std::string_view an = d.str(*a);
    auto al = alg_by_name(an);
    if (!al) {
        if (an == "none") return fail(errc::token_alg_not_allowed, "alg none is never accepted");
        return fail(errc::token_alg_not_allowed, "unsupported alg");
    }
    if (allowed && !allowed->contains(*al)) return fail(errc::token_alg_not_allowed, "alg not in the allow-list");
    // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject the
    // token; ferry understands none.
    if (d.find(h, "crit")) return fail(errc::token_alg_not_allowed, "crit header extensions are not supported");
    if (d.find(h, "enc") || d.find(h, "zip")) return fail(errc::token_malformed, "JWE or compressed tokens are not supported");
    header_info hi;
    hi.a = *al;
    if (const json::node* k = d.find(h, "kid")) {
        if (k->k != json::kind::string) return fail(errc::token_malformed, "header kid is not a string");
        if (k->str_len > lim.max_kid) return fail(errc::token_too_large, "kid longer than the limit");
        hi.kid = d.str(*k);
        hi.has_kid = true;
    }
    if (const json::node* t = d.find(h, "typ"); t && t->k != json::kind::string)
        return fail(errc::token_malformed, "header typ is not a string");
    return hi;
}

enum class rounding { down, up };

result<unix_time> numeric_date(const json::node& n, rounding r) {
    if (n.k != json::kind::number) return fail(errc::token_malformed, "time claim is not a number");
    std::int64_t v;
    if (n.integral) {
        v = n.i;
    } else {
        if (!std::isfinite(n.num) || n.num < 0 || n.num > double(kMaxTime))
            return fail(errc::token_malformed, "time claim out of range");
        v = std::int64_t(r == rounding::down ? std::floor(n.num) : std::ceil(n.num));
    }
    if (v < 0 || v > kMaxTime) return fail(errc::token_malformed, "time claim out of range");
    return v;
}

// Reads the claims of interest with their types and bounds (no policy checks).
status read_claims(const json::document& d, const limits& lim, claims& c) {
    const json::node& p = d.root();
    if (p.k != json::kind::object) return fail(errc::token_malformed, "claims are not a JSON object");
    if (const json::node* n = d.find(p, "sub")) {
        if (n->k != json::kind::string) return fail(errc::token_malformed, "sub is not a string");
        if (n->str_len > lim.max_sub) return fail(errc::token_too_large, "sub longer than the limit");
        c.sub.assign(d.str(*n));
    }
    if (const json::node* n = d.find(p, "exp")) {
        FERRY_TRY(v, numeric_date(*n, rounding::down));
        c.exp = *v;
    }
    if (const json::node* n = d.find(p, "nbf")) {
        FERRY_TRY(v, numeric_date(*n, rounding::up));
        c.nbf = *v;
    }
    if (const json::node* n = d.find(p, "iat")) {
        FERRY_TRY(v, numeric_date(*n, rounding::up));
        c.iat = *v;
    }
    if (const json::node* n = d.find(p, "iss")) {
        if (n->k != json::kind::string) return fail(errc::token_malformed, "iss is not a string");
        c.iss.emplace(d.str(*n));
    }
    if (const json::node* n = d.find(p, "aud")) {
        if (n->k == json::kind::string) {
            c.aud.emplace_back(d.str(*n));
        } else if (n->k == json::kind::array) {
            if (n->count > lim.max_audiences) return fail(errc::token_too_large, "too many aud values");
            c.aud.reserve(n->count);
            for (std::uint32_t i = n->first; i != json::npos; i = d.at(i).next) {
                if (d.at(i).k != json::kind::string) return fail(errc::token_malformed, "aud holds a non-string");
                c.aud.emplace_back(d.str(d.at(i)));
            }
        } else {
            return fail(errc::token_malformed, "aud is neither a string nor an array");
        }
    }
    if (const json::node* n = d.find(p, "ferry_tunnels")) {
        if (n->k != json::kind::array) return fail(errc::token_malformed, "ferry_tunnels is not an array");
        if (n->count > lim.max_tunnels) return fail(errc::token_too_large, "too many ferry_tunnels entries");
        c.tunnels.reserve(n->count);
        for (std::uint32_t i = n->first; i != json::npos; i = d.at(i).next) {
            const json::node& t = d.at(i);
            if (t.k != json::kind::string) return fail(errc::token_malformed, "ferry_tunnels holds a non-string");
            if (t.str_len == 0) return fail(errc::token_malformed, "empty ferry_tunnels entry");
            if (t.str_len > lim.max_tunnel_name) return fail(errc::token_too_large, "ferry_tunnels entry longer than the limit");
            c.tunnels.emplace_back(d.str(t));
        }
    }
    // `scope` grants only what it holds: a shape we do not read (null, a number, an array with
    // something else than scope tokens) grants nothing, and does not spoil a token that is
    // used for something else (a consumer token from an identity provider with its own ideas).
    if (const json::node* n = d.find(p, "scope")) {
        if (n->k == json::kind::string) {
            c.scope.assign(d.str(*n));
        } else if (n->k == json::kind::array) {
            for (std::uint32_t i = n->first; i != json::npos; i = d.at(i).next) {
                const json::node& t = d.at(i);
                const std::string_view v = t.k == json::kind::string ? d.str(t) : std::string_view{};
                if (v.empty() || v.find(' ') != std::string_view::npos) {
                    c.scope.clear();
                    break;
                }
                if (!c.scope.empty()) c.scope += ' ';
                c.scope += v;
            }
        }
    }
    return {};
}

status check_claims(const claims& c, const verify_options& opt, unix_time now) {
    if (c.sub.empty()) return fail(errc::token_invalid, "sub is missing or empty");
    if (!opt.issuer.empty()) {
        if (!c.iss) return fail(errc::token_bad_issuer, "iss is missing");
        if (*c.iss != opt.issuer) return fail(errc::token_bad_issuer, "iss does not match");
    }
    if (!c.aud.empty() || !opt.audiences.empty()) {
        if (opt.audiences.empty()) return fail(errc::token_bad_audience, "token has aud but no audience is configured");
        if (c.aud.empty()) return fail(errc::token_bad_audience, "aud is missing");
        bool match = false;
        for (const auto& a : c.aud)
            for (const auto& want : opt.audiences)
                if (a == want) match = true;
        if (!match) return fail(errc::token_bad_audience, "no aud value matches");
    }
    const std::int64_t leeway = std::clamp<std::int64_t>(opt.leeway, 0, kMaxLeeway);
    now = std::clamp<std::int64_t>(now, 0, kMaxTime);
    if (!c.exp && opt.require_exp) return fail(errc::token_invalid, "exp is missing");
    if (c.exp && now >= *c.exp + leeway) return fail(errc::token_expired, "token expired");
    if (c.nbf && now + leeway < *c.nbf) return fail(errc::token_not_yet_valid, "token not valid yet (nbf)");
    if (c.iat && opt.reject_future_iat && now + leeway < *c.iat)
        return fail(errc::token_not_yet_valid, "token issued in the future (iat)");
    return {};
}

status check_signature(const key_set& keys, const header_info& hi, const limits& lim,
                       std::string_view input, bytes sig) {
    if (hi.has_kid) {
        if (const key* k = keys.find_kid(hi.kid)) {
            if (k->algorithm() != hi.a) return fail(errc::token_key_mismatch, "kid names a key of another algorithm");
            return detail::verify_signature(*k, input, sig);
        }
    }
    // No kid, or a kid no key carries: unnamed keys of the token's algorithm (all of them of
    // that algorithm when the token has no kid).
    std::uint32_t tried = 0;
    status last = fail(errc::token_unknown_key, hi.has_kid ? "no key with this kid" : "no key for this alg");
    for (const key& k : keys.keys()) {
        if (k.algorithm() != hi.a) continue;
        if (hi.has_kid && !k.kid().empty()) continue;
        if (tried++ >= lim.max_kidless_keys) break;
        status s = detail::verify_signature(k, input, sig);
        if (s) return s;
        last = s;
        if (s.code() != errc::token_bad_signature) return s;
    }
    return last;
}

}  // namespace

result<claims> verify(std::string_view token, const key_set& keys, const verify_options& opt,
                      unix_time now, scratch& s) {
    const limits& lim = opt.lim;
    FERRY_TRY(p, split(token, lim));
    FERRY_TRY(hd, decode_part(p->header64, lim.max_header, s.header, "header longer than the limit", 0));
    if (auto st = json::parse(s.header, json_limits(lim, 64), s.hdoc); !st)
        return json_failure(st.err());
    FERRY_TRY(hi, read_header(s.hdoc, lim, &opt.allowed));

    // Signature: at most 512 bytes (RSA-4096); anything longer cannot verify.
    std::size_t sig_n = base64url::decoded_size(p->sig64.size());
    if (p->sig64.empty()) return fail(errc::token_bad_signature, "empty signature");
    if (sig_n == SIZE_MAX) return fail(errc::token_malformed, "bad base64url length in the signature");
    if (sig_n > 512) return fail(errc::token_bad_signature, "signature longer than any key allows");
    s.sig.resize(sig_n);
    if (auto r = base64url::decode(p->sig64, s.sig); !r)
        return fail(errc::token_malformed, r.err().detail, std::uint32_t(token.size() - p->sig64.size()) + r.err().offset);
    // The payload is decoded before the signature check only to apply its size limit early.
    const auto pbase = std::uint32_t(p->header64.size() + 1);
    FERRY_TRY(pd, decode_part(p->payload64, lim.max_payload, s.payload, "payload longer than the limit", pbase));

    FERRY_TRY(sg, check_signature(keys, *hi, lim, p->signing_input, s.sig));

    if (auto st = json::parse(s.payload, json_limits(lim, lim.max_values), s.pdoc); !st)
        return json_failure(st.err());
    claims c;
    FERRY_TRY(rc, read_claims(s.pdoc, lim, c));
    c.algorithm = hi->a;
    c.kid.assign(hi->kid);
    FERRY_TRY(cc, check_claims(c, opt, now));
    return c;
}

result<claims> inspect(std::string_view token, const limits& lim) {
    scratch s;
    FERRY_TRY(p, split(token, lim));
    FERRY_TRY(hd, decode_part(p->header64, lim.max_header, s.header, "header longer than the limit", 0));
    if (auto st = json::parse(s.header, json_limits(lim, 64), s.hdoc); !st)
        return json_failure(st.err());
    FERRY_TRY(hi, read_header(s.hdoc, lim, nullptr));
    const auto pbase = std::uint32_t(p->header64.size() + 1);
    FERRY_TRY(pd, decode_part(p->payload64, lim.max_payload, s.payload, "payload longer than the limit", pbase));
    if (auto st = json::parse(s.payload, json_limits(lim, lim.max_values), s.pdoc); !st)
        return json_failure(st.err());
    claims c;
    FERRY_TRY(rc, read_claims(s.pdoc, lim, c));
    c.algorithm = hi->a;
    c.kid.assign(hi->kid);
    return c;
}

}  // namespace ferry::jwt
