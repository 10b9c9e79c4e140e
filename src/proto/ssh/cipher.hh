#pragma once
// Packet protection for the binary packet protocol (RFC 4253 §6), one interface for every suite:
//
//   aes128-gcm@openssh.com / aes256-gcm@openssh.com   RFC 5647 as OpenSSH runs it: the 4-byte
//       packet length is sent in clear and authenticated as AAD; the 12-byte nonce is a 4-byte
//       fixed part and a 64-bit invocation counter incremented after every packet.
//   chacha20-poly1305@openssh.com   OpenSSH PROTOCOL.chacha20poly1305: 64 key bytes = K_2 (main,
//       first 32) || K_1 (header, last 32). K_1 encrypts the length, K_2 the rest from block
//       counter 1; the Poly1305 key is block 0 of K_2; the tag covers the encrypted length and
//       payload. The nonce is the sequence number.
//   aes128-ctr / aes256-ctr with hmac-sha2-256 / hmac-sha2-512: encrypt-and-MAC, the MAC is over
//       seqnr || plaintext packet (length field included, encrypted with the rest).
//   ... with hmac-sha2-{256,512}-etm@openssh.com: encrypt-then-MAC, length in clear, MAC over
//       seqnr || length || ciphertext, checked before anything is decrypted.
//   none: the initial state (block 8, no MAC).
//
// A `packet` below is the bytes from the length field to the end of the padding (4 +
// packet_length bytes); the MAC/tag follows it on the wire. Everything is done in place.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ssh {

enum class cipher_id : std::uint8_t {
    none,
    aes128_ctr,
    aes256_ctr,
    aes128_gcm,
    aes256_gcm,
    chacha20_poly1305,
};
enum class mac_id : std::uint8_t {
    none,
    hmac_sha2_256,
    hmac_sha2_512,
    hmac_sha2_256_etm,
    hmac_sha2_512_etm,
};

struct cipher_info {
    std::string_view name;
    std::uint8_t key_len;
    std::uint8_t iv_len;
    std::uint8_t block;  // cipher block size (padding multiple is max(8, block))
    bool aead;           // carries its own tag: the negotiated MAC is ignored
};
struct mac_info {
    std::string_view name;
    std::uint8_t key_len;
    std::uint8_t tag_len;
    bool etm;
};

const cipher_info& info(cipher_id c) noexcept;
const mac_info& info(mac_id m) noexcept;
std::optional<cipher_id> cipher_by_name(std::string_view name) noexcept;
std::optional<mac_id> mac_by_name(std::string_view name) noexcept;

class packet_cipher {
public:
    virtual ~packet_cipher() = default;

    // Padding makes (4 + packet_length), or packet_length alone when length_in_clear(), a
    // multiple of this (RFC 4253 §6; OpenSSH excludes the clear length for AEAD and EtM).
    virtual std::size_t block_size() const noexcept = 0;
    // MAC or tag bytes after the packet.
    virtual std::size_t tag_size() const noexcept = 0;
    // Bytes needed at the start of a packet to learn its length (4, or a cipher block when the
    // length is encrypted with the first block).
    virtual std::size_t length_bytes() const noexcept = 0;
    virtual bool length_in_clear() const noexcept = 0;

    // Protects `packet` in place (its length field and padding already written) and writes the
    // tag. Precondition: tag.size() == tag_size(), the packet is block-aligned.
    virtual status seal(std::uint32_t seq, mut_bytes packet, mut_bytes tag) noexcept = 0;
    // The same, except that packet[body_at, body_at + body.size()) is not filled in yet: that
    // part's plaintext is read from `body` (another buffer) and its ciphertext written in place,
    // so a channel's payload is not copied into the packet first. The result is byte for byte
    // what seal() gives. The default copies, then seals; AES-GCM reads `body` directly.
    // Precondition: 5 <= body_at, body_at + body.size() <= packet.size().
    virtual status seal_from(std::uint32_t seq, mut_bytes packet, std::size_t body_at, bytes body,
                             mut_bytes tag) noexcept;

    // Step 1 of opening: the packet_length field from the first length_bytes() bytes. May
    // decrypt them in place (CTR encrypt-and-MAC); called exactly once per packet, before open().
    // The value is not authenticated yet: the caller bounds it before waiting for more bytes.
    virtual result<std::uint32_t> open_length(std::uint32_t seq, mut_bytes first) noexcept = 0;
    // Step 2: checks the tag in constant time and decrypts `packet` in place (afterwards all of
    // it, length field included, is plaintext). Fails with errc::ssh_mac.
    virtual status open(std::uint32_t seq, mut_bytes packet, bytes tag) noexcept = 0;
};

// The initial, unprotected state.
std::unique_ptr<packet_cipher> make_null_cipher();
// A protected direction. `key`, `iv` and `mac_key` must have the lengths info() gives (the MAC
// key is ignored for AEAD ciphers).
result<std::unique_ptr<packet_cipher>> make_cipher(cipher_id c, mac_id m, bytes key, bytes iv,
                                                   bytes mac_key);

}  // namespace ferry::ssh
