#include "proto/jwt/keys.hh"

#include "proto/jwt/base64url.hh"
#include "proto/jwt/json.hh"
#include "proto/jwt/sig.hh"

namespace ferry::jwt {

std::string_view name(alg a) noexcept {
    switch (a) {
    case alg::hs256: return "HS256";
    case alg::rs256: return "RS256";
    case alg::es256: return "ES256";
    case alg::eddsa: return "EdDSA";
    }
    return "";
}

std::optional<alg> alg_by_name(std::string_view s) noexcept {
    if (s == "HS256") return alg::hs256;
    if (s == "RS256") return alg::rs256;
    if (s == "ES256") return alg::es256;
    if (s == "EdDSA") return alg::eddsa;
    return std::nullopt;
}

key::~key() {
    // Only HMAC keys are secret; public material needs no wiping.
    if (alg_ == alg::hs256) detail::wipe(mut_bytes(a_));
}

const key* key_set::find_kid(std::string_view kid) const noexcept {
    for (const key& k : keys_)
        if (!k.kid().empty() && k.kid() == kid) return &k;
    return nullptr;
}

namespace {

// "keys[3] (kid \"abc\")" for messages; the kid is escaped so a hostile document cannot forge
// log lines.
std::string describe(std::size_t index, std::string_view kid) {
    std::string s = "keys[" + std::to_string(index) + "]";
    if (!kid.empty()) {
        s += " (kid ";
        json::append_string(s, kid.substr(0, 64));
        s += ")";
    }
    return s;
}

status invalid(std::string* why, std::string msg) {
    if (why) *why = std::move(msg);
    return fail(errc::jwks_invalid, "key set rejected");
}

std::vector<std::byte> to_vec(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}

// Bit length of a big-endian unsigned integer without leading zero bytes.
std::uint32_t bit_length(bytes n) noexcept {
    if (n.empty()) return 0;
    std::uint32_t bits = std::uint32_t(n.size()) * 8;
    for (unsigned top = std::to_integer<unsigned>(n[0]); !(top & 0x80); top <<= 1) --bits;
    return bits;
}

}  // namespace

status key_set_builder::add(key k, std::string* why, const std::string& who) {
    if (!k.kid_.empty()) {
        for (const key& o : keys_) {
            if (o.kid_ == k.kid_) return invalid(why, who + ": duplicate kid");
        }
    }
    keys_.push_back(std::move(k));
    return {};
}

status key_set_builder::add_hs256_secret(bytes secret, std::string_view kid, std::string* why,
                                         const jwks_limits& lim) {
    if (secret.size() < lim.min_hmac_secret) {
        return invalid(why, "HS256 secret is " + std::to_string(secret.size()) + " bytes; at least " +
                                std::to_string(lim.min_hmac_secret) + " are required (RFC 7518 §3.2)");
    }
    if (kid.size() > lim.max_kid) return invalid(why, "HS256 secret: kid longer than the limit");
    key k;
    k.alg_ = alg::hs256;
    k.bits_ = std::uint32_t(secret.size() * 8);
    k.kid_ = std::string(kid);
    k.a_.assign(secret.begin(), secret.end());
    return add(std::move(k), why, "HS256 secret");
}

status key_set_builder::add_jwks(std::string_view text, const jwks_options& opt, jwks_report* report,
                                 std::string* why) {
    const jwks_limits& lim = opt.lim;
    if (text.size() > lim.max_text) {
        return invalid(why, "JWK set is " + std::to_string(text.size()) + " bytes; the limit is " +
                                std::to_string(lim.max_text));
    }
    json::limits jl;
    jl.max_depth = 5;
    jl.max_values = 64 * 1024;
    jl.max_members = std::max<std::uint32_t>(lim.max_keys, 64);
    jl.max_string = 64 * 1024;
    json::document doc;
    if (auto s = json::parse(text, jl, doc); !s) {
        return invalid(why, std::string("JWK set is not valid JSON: ") + s.err().detail + " at byte " +
                                std::to_string(s.err().offset));
    }
    const json::node& root = doc.root();
    if (root.k != json::kind::object) return invalid(why, "JWK set is not a JSON object");
    const json::node* ks = doc.find(root, "keys");
    if (!ks || ks->k != json::kind::array) return invalid(why, "JWK set has no \"keys\" array");
    if (ks->count > lim.max_keys) {
        return invalid(why, "JWK set has " + std::to_string(ks->count) + " keys; the limit is " +
                                std::to_string(lim.max_keys));
    }

    std::vector<key> staged;
    std::vector<std::string> skipped;
    std::size_t index = 0;
    for (std::uint32_t i = ks->first; i != json::npos; i = doc.at(i).next, ++index) {
        const json::node& jk = doc.at(i);
        std::string who = describe(index, {});
        if (jk.k != json::kind::object) return invalid(why, who + ": not a JSON object");

        auto get_str = [&](std::string_view member, std::string_view& out, bool& present) -> bool {
            const json::node* n = doc.find(jk, member);
            present = n != nullptr;
            if (!n) return true;
            if (n->k != json::kind::string) return false;
            out = doc.str(*n);
            return true;
        };
        std::string_view kty, kid, use, alg_s, crv;
        bool has_kty = false, has_kid = false, has_use = false, has_alg = false, has_crv = false;
        if (!get_str("kid", kid, has_kid)) return invalid(why, who + ": \"kid\" is not a string");
        who = describe(index, kid);
        if (kid.size() > lim.max_kid) return invalid(why, who + ": kid longer than the limit");
        if (!get_str("kty", kty, has_kty)) return invalid(why, who + ": \"kty\" is not a string");
        if (!has_kty) return invalid(why, who + ": \"kty\" is missing");
        if (!get_str("use", use, has_use)) return invalid(why, who + ": \"use\" is not a string");
        if (!get_str("alg", alg_s, has_alg)) return invalid(why, who + ": \"alg\" is not a string");
        if (!get_str("crv", crv, has_crv)) return invalid(why, who + ": \"crv\" is not a string");

        // A verifier must never hold signing material: refuse private members outright.
        static constexpr std::string_view kPrivate[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};
        for (std::string_view m : kPrivate) {
            if (doc.find(jk, m)) {
                return invalid(why, who + ": contains private key member \"" + std::string(m) +
                                        "\"; publish only public keys");
            }
        }

        auto skip = [&](std::string reason) -> status {
            std::string msg = who + ": " + reason;
            if (opt.unusable == unusable_keys::reject) return invalid(why, msg + " (unusable keys are rejected)");
            skipped.push_back(std::move(msg));
            return {};
        };

        if (has_use && use != "sig") {
            FERRY_TRY(s, skip("\"use\" is \"" + std::string(use.substr(0, 32)) + "\", not \"sig\""));
            continue;
        }
        if (const json::node* ops = doc.find(jk, "key_ops")) {
            if (ops->k != json::kind::array) return invalid(why, who + ": \"key_ops\" is not an array");
            bool verify = false;
            for (std::uint32_t j = ops->first; j != json::npos; j = doc.at(j).next) {
                if (doc.at(j).k != json::kind::string) return invalid(why, who + ": \"key_ops\" holds a non-string");
                if (doc.str(doc.at(j)) == "verify") verify = true;
            }
            if (!verify) {
                FERRY_TRY(s, skip("\"key_ops\" does not include \"verify\""));
                continue;
            }
        }

        // Which algorithm this key is for: its kty/crv fix it; an `alg` member, if any, must agree.
        alg a;
        if (kty == "RSA") {
            a = alg::rs256;
        } else if (kty == "EC") {
            if (!has_crv) return invalid(why, who + ": EC key without \"crv\"");
            if (crv != "P-256") {
                FERRY_TRY(s, skip("curve \"" + std::string(crv.substr(0, 32)) + "\" is not supported (P-256 only)"));
                continue;
            }
            a = alg::es256;
        } else if (kty == "OKP") {
            if (!has_crv) return invalid(why, who + ": OKP key without \"crv\"");
            if (crv != "Ed25519") {
                FERRY_TRY(s, skip("curve \"" + std::string(crv.substr(0, 32)) + "\" is not supported (Ed25519 only)"));
                continue;
            }
            a = alg::eddsa;
        } else if (kty == "oct") {
            // A symmetric JWK says nothing about its use without `alg`; only HS256 is taken.
            if (!has_alg || alg_s != "HS256") {
                FERRY_TRY(s, skip("oct key without \"alg\":\"HS256\""));
                continue;
            }
            a = alg::hs256;
        } else {
            FERRY_TRY(s, skip("kty \"" + std::string(kty.substr(0, 32)) + "\" is not supported"));
            continue;
        }
        if (has_alg && alg_s != name(a)) {
            FERRY_TRY(s, skip("alg \"" + std::string(alg_s.substr(0, 32)) + "\" is not supported for kty " +
                              std::string(kty)));
            continue;
        }

        auto member_b64 = [&](std::string_view m, std::vector<std::byte>& out) -> status {
            const json::node* n = doc.find(jk, m);
            if (!n) return invalid(why, who + ": \"" + std::string(m) + "\" is missing");
            if (n->k != json::kind::string) return invalid(why, who + ": \"" + std::string(m) + "\" is not a string");
            auto d = base64url::decode(doc.str(*n));
            if (!d) {
                return invalid(why, who + ": \"" + std::string(m) + "\" is not base64url: " + d.err().detail);
            }
            out = to_vec(*d);
            return {};
        };

        key k;
        k.alg_ = a;
        k.kid_ = std::string(kid);
        const char* reason = "";
        switch (a) {
        case alg::rs256: {
            FERRY_TRY(n1, member_b64("n", k.a_));
            FERRY_TRY(e1, member_b64("e", k.b_));
            // base64urlUInt must be minimal (RFC 7518 §2), but some publishers pad the modulus
            // with a zero byte; stripping it changes no value.
            auto strip = [](std::vector<std::byte>& v) {
                std::size_t z = 0;
                while (z < v.size() && v[z] == std::byte{0}) ++z;
                v.erase(v.begin(), v.begin() + std::ptrdiff_t(z));
            };
            strip(k.a_);
            strip(k.b_);
            k.bits_ = bit_length(k.a_);
            if (k.bits_ < lim.min_rsa_bits || k.bits_ > lim.max_rsa_bits) {
                return invalid(why, who + ": RSA modulus is " + std::to_string(k.bits_) + " bits; allowed " +
                                        std::to_string(lim.min_rsa_bits) + ".." + std::to_string(lim.max_rsa_bits));
            }
            if (!detail::check_rsa_public(k.a_, k.b_, reason)) return invalid(why, who + ": " + reason);
            break;
        }
        case alg::es256: {
            FERRY_TRY(x1, member_b64("x", k.a_));
            FERRY_TRY(y1, member_b64("y", k.b_));
            k.bits_ = 256;
            if (!detail::check_p256_public(k.a_, k.b_, reason)) return invalid(why, who + ": " + reason);
            break;
        }
        case alg::eddsa: {
            FERRY_TRY(x2, member_b64("x", k.a_));
            k.bits_ = 256;
            if (!detail::check_ed25519_public(k.a_, reason)) return invalid(why, who + ": " + reason);
            break;
        }
        case alg::hs256: {
            FERRY_TRY(k1, member_b64("k", k.a_));
            k.bits_ = std::uint32_t(k.a_.size() * 8);
            if (k.a_.size() < lim.min_hmac_secret) {
                return invalid(why, who + ": HS256 key is " + std::to_string(k.a_.size()) + " bytes; at least " +
                                        std::to_string(lim.min_hmac_secret) + " are required");
            }
            break;
        }
        }
        if (!k.kid_.empty()) {
            for (const key& o : staged)
                if (o.kid_ == k.kid_) return invalid(why, who + ": duplicate kid");
            for (const key& o : keys_)
                if (o.kid_ == k.kid_) return invalid(why, who + ": duplicate kid");
        }
        staged.push_back(std::move(k));
    }
    for (key& k : staged) keys_.push_back(std::move(k));
    if (report) {
        for (auto& s : skipped) report->skipped.push_back(std::move(s));
    }
    return {};
}

std::shared_ptr<const key_set> key_set_builder::build() {
    auto ks = std::make_shared<key_set>();
    ks->keys_ = std::move(keys_);
    keys_.clear();
    for (const key& k : ks->keys_) ks->algs_.add(k.algorithm());
    return ks;
}

result<std::vector<std::byte>> hs256_secret_from_file(bytes contents, std::size_t min_size) {
    std::size_t n = contents.size();
    if (n >= 1 && contents[n - 1] == std::byte{'\n'}) {
        --n;
        if (n >= 1 && contents[n - 1] == std::byte{'\r'}) --n;
    }
    if (n < min_size) return fail(errc::jwks_invalid, "HS256 secret file holds fewer than the minimum bytes");
    return std::vector<std::byte>(contents.begin(), contents.begin() + std::ptrdiff_t(n));
}

}  // namespace ferry::jwt
