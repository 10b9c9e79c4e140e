#include "proto/ssh/hostkey.hh"

#include <algorithm>
#include <cstring>

#include "proto/ssh/wire.hh"

namespace ferry::ssh {

std::vector<std::byte> ed25519_key_blob(const ed25519_public& pub) {
    std::vector<std::byte> b;
    writer(b).string(ssh_ed25519).string(bytes(pub));
    return b;
}

result<ed25519_public> parse_ed25519_key_blob(bytes blob) {
    reader r(blob);
    FERRY_TRY(alg, r.text());
    if (*alg != ssh_ed25519) return fail(errc::ssh_kex, "host key is not ssh-ed25519");
    FERRY_TRY(key, r.string());
    if (key->size() != 32) return fail(errc::ssh_kex, "ed25519 key is not 32 bytes");
    FERRY_TRY(end, r.expect_end());
    ed25519_public pub{};
    std::memcpy(pub.data(), key->data(), 32);
    return pub;
}

std::vector<std::byte> ed25519_signature_blob(const ed25519_signature& sig) {
    std::vector<std::byte> b;
    writer(b).string(ssh_ed25519).string(bytes(sig));
    return b;
}

status verify_ed25519_signature_blob(bytes key_blob, bytes sig_blob, bytes msg) {
    FERRY_TRY(pub, parse_ed25519_key_blob(key_blob));
    reader r(sig_blob);
    FERRY_TRY(alg, r.text());
    if (*alg != ssh_ed25519) return fail(errc::ssh_kex, "signature is not ssh-ed25519");
    FERRY_TRY(sig, r.string());
    FERRY_TRY(end, r.expect_end());
    if (!ed25519_verify(*pub, msg, *sig)) return fail(errc::ssh_kex, "bad host key signature");
    return {};
}

std::string fingerprint_sha256(bytes key_blob) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    auto d = sha256(key_blob);
    std::string out = "SHA256:";
    std::uint32_t acc = 0;
    int bits = 0;
    for (std::byte b : d) {
        acc = (acc << 8) | std::to_integer<std::uint32_t>(b);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += tbl[(acc >> bits) & 63];
        }
    }
    if (bits > 0) out += tbl[(acc << (6 - bits)) & 63];
    return out;
}

bool pinned_host_keys::accept(std::string_view algorithm, bytes key_blob) {
    for (const auto& k : keys_) {
        if (k.size() == key_blob.size() && std::equal(k.begin(), k.end(), key_blob.begin())) {
            return true;
        }
    }
    if (!fingerprints_.empty()) {
        std::string fp = fingerprint_sha256(key_blob);
        if (std::find(fingerprints_.begin(), fingerprints_.end(), fp) != fingerprints_.end()) {
            return true;
        }
    }
    if (policy_ == policy::trust_on_first_use && keys_.empty() && fingerprints_.empty()) {
        pin(key_blob);
        return true;
    }
    return false;
}

}  // namespace ferry::ssh
