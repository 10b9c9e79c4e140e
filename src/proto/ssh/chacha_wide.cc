#include "proto/ssh/chacha_wide.hh"

// GCC 12 warns about _mm512_rol_epi32's own _mm512_undefined_epi32() argument (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <string.h>  // explicit_bzero

#include <cstring>

namespace ferry::ssh::detail {
namespace {

constexpr std::uint32_t kSigma[4] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};  // "expand 32-byte k"

std::uint32_t load_le32(const unsigned char* p) noexcept {
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}

#if defined(__x86_64__)

// ---- AVX-512: lane j of vector x[i] is state word i of block j -----------------------------------

#define FERRY_AVX512 __attribute__((target("avx512f")))
// On return, zero the general and mask registers the function used where the compiler can
// (GCC >= 11, clang >= 15); the vector registers are cleared explicitly in xor_avx512.
#if defined(__has_attribute)
#if __has_attribute(zero_call_used_regs)
#define FERRY_ZERO_USED_REGS __attribute__((zero_call_used_regs("used")))
#endif
#endif
#ifndef FERRY_ZERO_USED_REGS
#define FERRY_ZERO_USED_REGS
#endif

template <int N>
FERRY_AVX512 inline __m512i rotl(__m512i v) noexcept {
    return _mm512_rol_epi32(v, N);
}

FERRY_AVX512 inline void quarter(__m512i& a, __m512i& b, __m512i& c, __m512i& d) noexcept {
    a = _mm512_add_epi32(a, b); d = rotl<16>(_mm512_xor_si512(d, a));
    c = _mm512_add_epi32(c, d); b = rotl<12>(_mm512_xor_si512(b, c));
    a = _mm512_add_epi32(a, b); d = rotl<8>(_mm512_xor_si512(d, a));
    c = _mm512_add_epi32(c, d); b = rotl<7>(_mm512_xor_si512(b, c));
}

// XORs 16 consecutive blocks (1 KiB) starting at `counter`.
FERRY_AVX512 FERRY_ZERO_USED_REGS void sixteen_blocks(const __m512i init[16], std::uint64_t counter, const std::byte* in,
                                 std::byte* out) noexcept {
    // Counters counter+0 .. counter+15, the carry into the high word handled per lane.
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i lo0 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(counter)));
    const __m512i lo = _mm512_add_epi32(lo0, lane);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(lo, lo0);
    const __m512i hi0 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(counter >> 32)));
    const __m512i hi = _mm512_mask_add_epi32(hi0, carry, hi0, _mm512_set1_epi32(1));

    __m512i x[16];
    for (int i = 0; i < 16; ++i) x[i] = init[i];
    x[12] = lo;
    x[13] = hi;
    for (int round = 0; round < 10; ++round) {
        quarter(x[0], x[4], x[8], x[12]);
        quarter(x[1], x[5], x[9], x[13]);
        quarter(x[2], x[6], x[10], x[14]);
        quarter(x[3], x[7], x[11], x[15]);
        quarter(x[0], x[5], x[10], x[15]);
        quarter(x[1], x[6], x[11], x[12]);
        quarter(x[2], x[7], x[8], x[13]);
        quarter(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 12; ++i) x[i] = _mm512_add_epi32(x[i], init[i]);
    x[12] = _mm512_add_epi32(x[12], lo);
    x[13] = _mm512_add_epi32(x[13], hi);
    x[14] = _mm512_add_epi32(x[14], init[14]);
    x[15] = _mm512_add_epi32(x[15], init[15]);

    // Transpose 16 x 16 words so that each vector holds one block. After the 32- and 64-bit
    // interleaves, u[4g + m] holds, in its 128-bit lane k, words 4g..4g+3 of block 4k + m.
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(x[i], x[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(x[i], x[i + 1]);
    }
    for (int g = 0; g < 4; ++g) {
        const __m512i* s = t + 4 * g;  // t[4g..4g+3]: words 4g,4g+1 (lo/hi) and 4g+2,4g+3 (lo/hi)
        u[4 * g + 0] = _mm512_unpacklo_epi64(s[0], s[2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(s[0], s[2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(s[1], s[3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(s[1], s[3]);
    }
    for (int m = 0; m < 4; ++m) {
        // 4 x 4 transpose of 128-bit lanes: A,B,C,D = word groups 0..3 of blocks m, 4+m, 8+m, 12+m.
        const __m512i a = u[m], b = u[4 + m], c = u[8 + m], d = u[12 + m];
        const __m512i v0 = _mm512_shuffle_i32x4(a, b, 0x44);  // A0 A1 B0 B1
        const __m512i v1 = _mm512_shuffle_i32x4(a, b, 0xEE);  // A2 A3 B2 B3
        const __m512i v2 = _mm512_shuffle_i32x4(c, d, 0x44);  // C0 C1 D0 D1
        const __m512i v3 = _mm512_shuffle_i32x4(c, d, 0xEE);  // C2 C3 D2 D3
        const __m512i block[4] = {
            _mm512_shuffle_i32x4(v0, v2, 0x88),  // A0 B0 C0 D0: block m
            _mm512_shuffle_i32x4(v0, v2, 0xDD),  // block 4 + m
            _mm512_shuffle_i32x4(v1, v3, 0x88),  // block 8 + m
            _mm512_shuffle_i32x4(v1, v3, 0xDD),  // block 12 + m
        };
        for (int k = 0; k < 4; ++k) {
            const std::size_t off = std::size_t(4 * k + m) * 64;
            const __m512i p = _mm512_loadu_si512(in + off);
            _mm512_storeu_si512(out + off, _mm512_xor_si512(p, block[k]));
        }
    }
}

__attribute__((noinline)) FERRY_AVX512 FERRY_ZERO_USED_REGS std::size_t xor_avx512(
    const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter, const std::byte* in,
    std::byte* out, std::size_t len) noexcept {
    __m512i init[16];
    for (int i = 0; i < 4; ++i) init[i] = _mm512_set1_epi32(static_cast<int>(kSigma[i]));
    for (int i = 0; i < 8; ++i) init[4 + i] = _mm512_set1_epi32(static_cast<int>(key[i]));
    init[12] = init[13] = _mm512_setzero_si512();  // the counter words are set per chunk
    init[14] = _mm512_set1_epi32(static_cast<int>(load_le32(nonce)));
    init[15] = _mm512_set1_epi32(static_cast<int>(load_le32(nonce + 4)));
    const std::size_t chunks = len / 1024;
    for (std::size_t c = 0; c < chunks; ++c) {
        sixteen_blocks(init, counter + 16 * c, in + 1024 * c, out + 1024 * c);
    }
    // Key broadcasts and keystream may be left in any vector register: vzeroall clears zmm0-15,
    // zmm16-31 one by one (zero_call_used_regs covers only what GCC counts as used, clang 14
    // has no such attribute).
    asm volatile(
        "vzeroall\n\t"
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31"
        :
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
          "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "memory");
    return chunks * 1024;
}

// xor_avx512's frame (about 2.9 KiB with GCC 12) holds spilled copies of the key broadcasts
// and of keystream. Called right after it from the same caller, this function's buffer covers
// the same stack and overwrites them.
__attribute__((noinline)) void scrub_stack() noexcept {
    unsigned char buf[8192];
    explicit_bzero(buf, sizeof buf);
    asm volatile("" : : "r"(buf) : "memory");
}

#endif  // __x86_64__

}  // namespace

bool chacha_wide_available() noexcept {
#if defined(__x86_64__)
    // libgcc's check covers the OS side too (XCR0 has the opmask and ZMM state bits).
    static const bool ok = __builtin_cpu_supports("avx512f");
    return ok;
#else
    return false;
#endif
}

std::size_t chacha_wide_xor(const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter,
                            const std::byte* in, std::byte* out, std::size_t len) noexcept {
#if defined(__x86_64__)
    const std::size_t done = xor_avx512(key, nonce, counter, in, out, len);
    scrub_stack();
    return done;
#else
    (void)key, (void)nonce, (void)counter, (void)in, (void)out, (void)len;
    return 0;
#endif
}

void chacha_block_ref(const std::uint32_t key[8], const unsigned char nonce[8], std::uint64_t counter,
                      unsigned char out[64]) noexcept {
    std::uint32_t s[16], x[16];
    for (int i = 0; i < 4; ++i) s[i] = kSigma[i];
    for (int i = 0; i < 8; ++i) s[4 + i] = key[i];
    s[12] = static_cast<std::uint32_t>(counter);
    s[13] = static_cast<std::uint32_t>(counter >> 32);
    s[14] = load_le32(nonce);
    s[15] = load_le32(nonce + 4);
    std::memcpy(x, s, sizeof x);
    auto rol = [](std::uint32_t v, int n) { return (v << n) | (v >> (32 - n)); };
    auto qr = [&](int a, int b, int c, int d) {
        x[a] += x[b]; x[d] = rol(x[d] ^ x[a], 16);
        x[c] += x[d]; x[b] = rol(x[b] ^ x[c], 12);
        x[a] += x[b]; x[d] = rol(x[d] ^ x[a], 8);
        x[c] += x[d]; x[b] = rol(x[b] ^ x[c], 7);
    };
    for (int round = 0; round < 10; ++round) {
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15);
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14);
    }
    for (int i = 0; i < 16; ++i) {
        const std::uint32_t v = x[i] + s[i];
        out[4 * i] = static_cast<unsigned char>(v);
        out[4 * i + 1] = static_cast<unsigned char>(v >> 8);
        out[4 * i + 2] = static_cast<unsigned char>(v >> 16);
        out[4 * i + 3] = static_cast<unsigned char>(v >> 24);
    }
}

}  // namespace ferry::ssh::detail
