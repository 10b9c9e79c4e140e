#include "proto/ws/mask.hh"

#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ferry::ws::detail {

namespace {

// Bytes needed to bring `p` to an `align`-byte boundary (0..align-1).
inline std::size_t head_to_align(const void* p, std::size_t align) noexcept {
    return (align - (reinterpret_cast<std::uintptr_t>(p) & (align - 1))) & (align - 1);
}

#if defined(__x86_64__)

// SSE2 is part of x86-64, so this path needs no run-time check.
void mask_sse2(std::byte* p, std::size_t n, std::uint32_t k) noexcept {
    std::size_t h = head_to_align(p, 16);
    if (h > n) h = n;
    mask_small(p, h, k);
    p += h;
    n -= h;
    k = rotate_mask_key(k, h);
    const __m128i kv = _mm_set1_epi32(static_cast<int>(k));
    while (n >= 64) {
        auto* v = reinterpret_cast<__m128i*>(p);
        __m128i a = _mm_load_si128(v), b = _mm_load_si128(v + 1);
        __m128i c = _mm_load_si128(v + 2), d = _mm_load_si128(v + 3);
        _mm_store_si128(v, _mm_xor_si128(a, kv));
        _mm_store_si128(v + 1, _mm_xor_si128(b, kv));
        _mm_store_si128(v + 2, _mm_xor_si128(c, kv));
        _mm_store_si128(v + 3, _mm_xor_si128(d, kv));
        p += 64;
        n -= 64;
    }
    while (n >= 16) {
        auto* v = reinterpret_cast<__m128i*>(p);
        _mm_store_si128(v, _mm_xor_si128(_mm_load_si128(v), kv));
        p += 16;
        n -= 16;
    }
    mask_small(p, n, k);
}

__attribute__((target("avx2"))) void mask_avx2(std::byte* p, std::size_t n,
                                               std::uint32_t k) noexcept {
    // Aligned stores: a 16 KiB payload in a receive buffer starts at an arbitrary offset (after
    // a 2..14 byte header), and split stores across cache lines cost more than the short head.
    std::size_t h = head_to_align(p, 32);
    if (h > n) h = n;
    mask_small(p, h, k);
    p += h;
    n -= h;
    k = rotate_mask_key(k, h);
    const __m256i kv = _mm256_set1_epi32(static_cast<int>(k));
    while (n >= 128) {
        auto* v = reinterpret_cast<__m256i*>(p);
        __m256i a = _mm256_load_si256(v), b = _mm256_load_si256(v + 1);
        __m256i c = _mm256_load_si256(v + 2), d = _mm256_load_si256(v + 3);
        _mm256_store_si256(v, _mm256_xor_si256(a, kv));
        _mm256_store_si256(v + 1, _mm256_xor_si256(b, kv));
        _mm256_store_si256(v + 2, _mm256_xor_si256(c, kv));
        _mm256_store_si256(v + 3, _mm256_xor_si256(d, kv));
        p += 128;
        n -= 128;
    }
    while (n >= 32) {
        auto* v = reinterpret_cast<__m256i*>(p);
        _mm256_store_si256(v, _mm256_xor_si256(_mm256_load_si256(v), kv));
        p += 32;
        n -= 32;
    }
    mask_small(p, n, k);
}

__attribute__((target("avx2"))) void mask_copy_avx2(std::byte* dst, const std::byte* src,
                                                    std::size_t n, std::uint32_t k) noexcept {
    const __m256i kv = _mm256_set1_epi32(static_cast<int>(k));
    while (n >= 32) {
        __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_xor_si256(a, kv));
        src += 32;
        dst += 32;
        n -= 32;
    }
    std::memcpy(dst, src, n);
    mask_small(dst, n, k);
}

void mask_copy_sse2(std::byte* dst, const std::byte* src, std::size_t n, std::uint32_t k) noexcept {
    const __m128i kv = _mm_set1_epi32(static_cast<int>(k));
    while (n >= 16) {
        __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_xor_si128(a, kv));
        src += 16;
        dst += 16;
        n -= 16;
    }
    std::memcpy(dst, src, n);
    mask_small(dst, n, k);
}

bool cpu_has_avx2() noexcept {
    // Function-local static: evaluated once, then one predictable branch per call.
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return has;
}

#endif  // __x86_64__

}  // namespace

void mask_bulk(std::byte* p, std::size_t n, std::uint32_t k) noexcept {
#if defined(__x86_64__)
    if (cpu_has_avx2()) {
        mask_avx2(p, n, k);
    } else {
        mask_sse2(p, n, k);
    }
#else
    mask_small(p, n, k);
#endif
}

void mask_copy_bulk(std::byte* dst, const std::byte* src, std::size_t n, std::uint32_t k) noexcept {
#if defined(__x86_64__)
    if (cpu_has_avx2()) {
        mask_copy_avx2(dst, src, n, k);
    } else {
        mask_copy_sse2(dst, src, n, k);
    }
#else
    std::memcpy(dst, src, n);
    mask_small(dst, n, k);
#endif
}

}  // namespace ferry::ws::detail
