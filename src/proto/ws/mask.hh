#pragma once
// RFC 6455 §5.3 payload masking: byte i of a frame's payload is XORed with key[i % 4].
//
// A payload reaches the codec in pieces (a receive can end at any byte), so every function takes
// the `phase`: the payload offset of data[0] modulo 4. The key is the 4 wire bytes packed in
// memory order into a 32-bit word (what `std::memcpy(&key, wire, 4)` gives), so no byte swap is
// needed on either endianness.
//
// The work is done a vector at a time: AVX2 (32 bytes) when the CPU has it, picked once at run
// time, SSE2 (16 bytes) otherwise on x86-64, 8-byte words elsewhere. Unaligned heads are handled
// by rotating the key, never by byte loops over the whole payload.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ferry::ws {

// Key word rotated so that its first memory byte is key[phase % 4].
inline std::uint32_t rotate_mask_key(std::uint32_t key, std::size_t phase) noexcept {
    const int sh = static_cast<int>((phase & 3) * 8);
    if constexpr (std::endian::native == std::endian::little) {
        return std::rotr(key, sh);
    } else {
        return std::rotl(key, sh);
    }
}

namespace detail {
void mask_bulk(std::byte* p, std::size_t n, std::uint32_t rotated_key) noexcept;
void mask_copy_bulk(std::byte* dst, const std::byte* src, std::size_t n,
                    std::uint32_t rotated_key) noexcept;

// Short payloads (most control frames, small chat-like messages) stay inline: a call through the
// dispatcher costs more than the XOR.
inline void mask_small(std::byte* p, std::size_t n, std::uint32_t k) noexcept {
    std::uint64_t k8 = (std::uint64_t(k) << 32) | k;
    while (n >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        w ^= k8;
        std::memcpy(p, &w, 8);
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        std::uint32_t w;
        std::memcpy(&w, p, 4);
        w ^= k;
        std::memcpy(p, &w, 4);
        p += 4;
        n -= 4;
    }
    unsigned char kb[4];
    std::memcpy(kb, &k, 4);
    for (std::size_t i = 0; i < n; ++i) p[i] ^= std::byte(kb[i]);
}
}  // namespace detail

// Masks (or unmasks: XOR is its own inverse) `n` bytes at `p` in place. `phase` is the payload
// offset of p[0] modulo 4 (any value; only the low 2 bits are used).
inline void apply_mask(std::byte* p, std::size_t n, std::uint32_t key, std::size_t phase) noexcept {
    const std::uint32_t k = rotate_mask_key(key, phase);
    if (n <= 64) {
        detail::mask_small(p, n, k);
    } else {
        detail::mask_bulk(p, n, k);
    }
}

// dst[i] = src[i] ^ key[(phase + i) % 4]; the buffers must not overlap. Used by the client-role
// encoder when the caller's payload is read-only (one copy, masking folded into it).
inline void copy_masked(std::byte* dst, const std::byte* src, std::size_t n, std::uint32_t key,
                        std::size_t phase) noexcept {
    if (n == 0) return;
    detail::mask_copy_bulk(dst, src, n, rotate_mask_key(key, phase));
}

}  // namespace ferry::ws
