// ChaCha20 keystream, 16 blocks at a time with AVX-512 (the bulk of chacha20-poly1305@openssh.com).
//
// wolfSSL 5.5.4's ChaCha20 stops at AVX2 and was two thirds of a seal+open of 32 KiB packets
// (docs/ssh.md, "ChaCha20 with AVX-512"). This is the original ChaCha20 (Bernstein's layout:
// 64-bit block counter in state words 12-13, 64-bit nonce in words 14-15), the variant the SSH
// cipher uses. Only whole 1 KiB chunks go through here; the caller finishes the tail (and runs
// everything on CPUs without AVX-512F) with wolfCrypt.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::ssh::detail {

// True when the CPU has AVX-512F and the OS saves its registers. Checked once.
bool chacha_wide_available() noexcept;

// out[i] = in[i] ^ keystream for the first (len / 1024) * 1024 bytes, starting at block
// `counter` (64-byte blocks) under `key` (8 little-endian words) and `nonce` (the 8 nonce bytes,
// loaded as two little-endian words). `in` and `out` may be the same buffer. Returns the number
// of bytes done; afterwards the stack it used is overwritten (spilled key and keystream) and, with
// compilers that can, the vector registers it used are zeroed. Precondition:
// chacha_wide_available() (elsewhere it does nothing and returns 0).
std::size_t chacha_wide_xor(const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter,
                            const std::byte* in, std::byte* out, std::size_t len) noexcept;

// Portable one-block reference (the unit tests compare the wide code against it).
void chacha_block_ref(const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter,
                      unsigned char out[64]) noexcept;

}  // namespace ferry::ssh::detail
