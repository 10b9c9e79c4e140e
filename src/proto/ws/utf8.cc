#include "proto/ws/utf8.hh"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace ferry::ws {

namespace {

// For a lead byte 0xC0..0xFF: how many continuation bytes follow and the allowed range of the
// first one (the range is what excludes overlongs, surrogates and > U+10FFFF; later continuation
// bytes are always 0x80..0xBF). len 0 = not a valid lead byte (C0, C1: overlong; F5..FF).
struct lead_info {
    std::uint8_t len, lo, hi;
};

constexpr lead_info lead_of(unsigned b) noexcept {
    if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
    if (b == 0xE0) return {2, 0xA0, 0xBF};  // E0 80..9F would be overlong
    if (b == 0xED) return {2, 0x80, 0x9F};  // ED A0..BF would be a surrogate
    if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
    if (b == 0xF0) return {3, 0x90, 0xBF};  // F0 80..8F would be overlong
    if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
    if (b == 0xF4) return {3, 0x80, 0x8F};  // F4 90.. would be above U+10FFFF
    return {0, 0, 0};
}

constexpr std::array<lead_info, 64> make_leads() noexcept {
    std::array<lead_info, 64> t{};
    for (unsigned i = 0; i < 64; ++i) t[i] = lead_of(0xC0 + i);
    return t;
}
constexpr std::array<lead_info, 64> leads = make_leads();

// Index of the first byte >= 0x80 in p[i, n), or n.
inline std::size_t skip_ascii(const std::uint8_t* p, std::size_t i, std::size_t n) noexcept {
#if defined(__x86_64__)
    while (n - i >= 32) {
        __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 16));
        unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(a, b)));
        if (m != 0) break;
        i += 32;
    }
    while (n - i >= 16) {
        unsigned m = static_cast<unsigned>(
            _mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))));
        if (m != 0) return i + static_cast<unsigned>(__builtin_ctz(m));
        i += 16;
    }
#else
    while (n - i >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
    }
#endif
    while (i < n && p[i] < 0x80) ++i;
    return i;
}

}  // namespace

bool utf8_validator::feed(const std::byte* bp, std::size_t n) noexcept {
    if (bad_) return false;
    const auto* p = reinterpret_cast<const std::uint8_t*>(bp);
    std::size_t i = 0;
    // Finish a code point left open by the previous call.
    while (need_ != 0) {
        if (i == n) return true;
        const std::uint8_t b = p[i];
        if (b < lo_ || b > hi_) return fail();
        lo_ = 0x80;
        hi_ = 0xBF;
        --need_;
        ++i;
    }
    while (i < n) {
        i = skip_ascii(p, i, n);
        // Decode consecutive multi-byte sequences here: non-Latin text rarely has ASCII between
        // its code points, and going back through the vector test for each one would cost more.
        while (i < n && p[i] >= 0x80) {
            const std::uint8_t b = p[i];
            if (b < 0xC2) return fail();  // stray continuation byte, or C0/C1 (overlong)
            const lead_info li = leads[b - 0xC0];
            if (li.len == 0) return fail();
            if (n - i > li.len) {
                const std::uint8_t c1 = p[i + 1];
                if (c1 < li.lo || c1 > li.hi) return fail();
                if (li.len >= 2 && (p[i + 2] & 0xC0) != 0x80) return fail();
                if (li.len == 3 && (p[i + 3] & 0xC0) != 0x80) return fail();
                i += li.len + 1u;
                continue;
            }
            // The input ends inside this code point: check what is there, remember the rest.
            need_ = li.len;
            lo_ = li.lo;
            hi_ = li.hi;
            for (++i; i < n; ++i) {
                if (p[i] < lo_ || p[i] > hi_) return fail();
                lo_ = 0x80;
                hi_ = 0xBF;
                --need_;
            }
            return true;
        }
    }
    return true;
}

bool valid_utf8(bytes b) noexcept {
    utf8_validator v;
    return v.feed(b) && v.complete();
}

}  // namespace ferry::ws
