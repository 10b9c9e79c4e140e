#pragma once
// Key exchange pieces (RFC 4253 §7-8, RFC 8731, RFC 8308, OpenSSH strict KEX): KEXINIT encoding,
// algorithm negotiation, the curve25519-sha256 exchange hash and key derivation. The state
// machine that drives them is `transport`.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/cipher.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/version.hh"

namespace ferry::ssh {

// Pseudo-algorithms that only signal features in the kex list.
inline constexpr std::string_view kex_strict_client = "kex-strict-c-v00@openssh.com";
inline constexpr std::string_view kex_strict_server = "kex-strict-s-v00@openssh.com";
inline constexpr std::string_view ext_info_client = "ext-info-c";
inline constexpr std::string_view ext_info_server = "ext-info-s";

enum class kex_id : std::uint8_t { curve25519_sha256, curve25519_sha256_libssh };
std::string_view name(kex_id k) noexcept;

struct kexinit {
    std::array<std::byte, 16> cookie{};
    std::string kex, host_key, enc_c2s, enc_s2c, mac_c2s, mac_s2c, comp_c2s, comp_s2c, lang_c2s,
        lang_s2c;
    bool first_kex_follows = false;
};

// The KEXINIT payload (message number included): it is I_C or I_S of the exchange hash.
std::vector<std::byte> encode_kexinit(const kexinit& k);
// Parses a KEXINIT payload (message number included); every name-list is validated.
result<kexinit> parse_kexinit(bytes payload);

// Index 0: client to server, 1: server to client.
struct algorithms {
    kex_id kex = kex_id::curve25519_sha256;
    cipher_id enc[2] = {cipher_id::none, cipher_id::none};
    mac_id mac[2] = {mac_id::none, mac_id::none};
    bool strict = false;           // both sides offered strict KEX
    bool client_ext_info = false;  // the client listed ext-info-c
    bool guess_wrong = false;      // the peer's guessed first kex packet must be ignored
};

// RFC 4253 §7.1: each algorithm is the first on the client's list that the server also lists.
// AEAD ciphers ignore the MAC list (as OpenSSH does). `self` tells whose guess may be wrong.
// Fails with errc::ssh_kex when a category has no common algorithm.
result<algorithms> negotiate(const kexinit& client, const kexinit& server, role self);

// curve25519-sha256 exchange hash (RFC 8731 §3, RFC 4253 §8):
//   H = SHA256(string V_C || string V_S || string I_C || string I_S || string K_S ||
//              string Q_C || string Q_S || mpint K)
// where K is the 32-byte X25519 output read as an unsigned big-endian number.
std::array<std::byte, 32> exchange_hash(std::string_view v_c, std::string_view v_s, bytes i_c,
                                        bytes i_s, bytes k_s, bytes q_c, bytes q_s,
                                        bytes shared_secret);

// RFC 4253 §7.2: HASH(K || H || letter || session_id), extended by HASH(K || H || K1 || ...)
// until `out` is full. `k_mpint` is K already encoded as an mpint (with its length).
void derive_key(hash_alg h, bytes k_mpint, bytes exchange_hash, char letter, bytes session_id,
                mut_bytes out);

// The six derived values for one key exchange. Wiped on destruction.
struct session_keys {
    std::vector<std::byte> iv[2], key[2], mac[2];  // [0] client to server, [1] server to client
    ~session_keys();
};
session_keys derive_session_keys(const algorithms& a, bytes shared_secret,
                                 bytes exchange_hash, bytes session_id);

}  // namespace ferry::ssh
