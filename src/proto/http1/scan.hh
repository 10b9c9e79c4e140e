#pragma once
// Internal to src/proto/http1: character classes and the fast scanners of the head parser.
// Not part of the public API (no stability promise); tests and the fuzz target may use it.
//
// Every byte of a head goes through `find_special` once (16 bytes at a time with SSE2), which
// finds the CR that ends a line and at the same time rejects every control character a line may
// not contain; the few bytes of names and methods then go through a 256-entry class table.
#include <cstddef>
#include <cstdint>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ferry::http1::detail {

enum : std::uint8_t {
    c_tchar = 1,    // RFC 9110 §5.6.2 tchar: token characters (methods, field names, codings)
    c_target = 2,   // request-target: visible ASCII 0x21..0x7E (no SP, no obs-text)
    c_special = 4,  // may not appear inside any line: CTLs except HTAB, and DEL (CR/LF end lines)
    c_hex = 8,      // HEXDIG
    c_ows = 16,     // SP / HTAB
};

struct char_table {
    std::uint8_t cls[256];
    std::uint8_t hexval[256];
    constexpr char_table() : cls{}, hexval{} {
        for (int c = 0; c < 256; ++c) {
            std::uint8_t f = 0;
            bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
            bool digit = c >= '0' && c <= '9';
            if (alpha || digit) f |= c_tchar;
            switch (c) {
            case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
            case '-': case '.': case '^': case '_': case '`': case '|': case '~':
                f |= c_tchar;
                break;
            default:
                break;
            }
            if (c >= 0x21 && c <= 0x7E) f |= c_target;
            if ((c < 0x20 && c != '\t') || c == 0x7F) f |= c_special;
            if (c == ' ' || c == '\t') f |= c_ows;
            hexval[c] = 0xFF;
            if (digit) { f |= c_hex; hexval[c] = static_cast<std::uint8_t>(c - '0'); }
            if (c >= 'a' && c <= 'f') { f |= c_hex; hexval[c] = static_cast<std::uint8_t>(c - 'a' + 10); }
            if (c >= 'A' && c <= 'F') { f |= c_hex; hexval[c] = static_cast<std::uint8_t>(c - 'A' + 10); }
            cls[c] = f;
        }
    }
};

inline constexpr char_table table{};

inline bool is_tchar(char c) noexcept { return table.cls[static_cast<unsigned char>(c)] & c_tchar; }
inline bool is_target(char c) noexcept { return table.cls[static_cast<unsigned char>(c)] & c_target; }
inline bool is_special(char c) noexcept { return table.cls[static_cast<unsigned char>(c)] & c_special; }
inline bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }
inline unsigned hex_value(char c) noexcept { return table.hexval[static_cast<unsigned char>(c)]; }

inline char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

// First byte in [p, end) that is not a tchar, or `end`. Four table look-ups per branch: names
// are short and the per-byte exit branch was the field parser's main cost.
inline const char* skip_tchars(const char* p, const char* end) noexcept {
    const std::uint8_t* t = table.cls;
    while (end - p >= 4) {
        const auto* u = reinterpret_cast<const unsigned char*>(p);
        if (!(t[u[0]] & t[u[1]] & t[u[2]] & t[u[3]] & c_tchar)) break;
        p += 4;
    }
    while (p < end && is_tchar(*p)) ++p;
    return p;
}

// First byte in [p, end) that may not appear inside a line (see c_special), or `end`.
// Precondition: p <= end, both in one object.
inline const char* find_special(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
    const __m128i c1f = _mm_set1_epi8(0x1F);
    const __m128i tab = _mm_set1_epi8(0x09);
    const __m128i del = _mm_set1_epi8(0x7F);
    auto mask = [&](const char* at) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
        // v <= 0x1F (unsigned) <=> min(v, 0x1F) == v
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v);
        __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl), _mm_cmpeq_epi8(v, del));
        return static_cast<unsigned>(_mm_movemask_epi8(bad));
    };
    // 32 bytes per branch: field lines are typically 20..100 bytes.
    while (end - p >= 32) {
        unsigned bits = mask(p) | (mask(p + 16) << 16);
        if (bits != 0) return p + __builtin_ctz(bits);
        p += 32;
    }
    if (end - p >= 16) {
        unsigned bits = mask(p);
        if (bits != 0) return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
    while (p < end && !is_special(*p)) ++p;
    return p;
}

// First byte in [p, end) that is not a request-target character, or `end`.
// Precondition: the range holds no c_special byte (find_special already ran over it), so the
// only bytes left to reject are SP, HTAB and obs-text (0x80..0xFF).
inline const char* find_non_target(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // Signed compare: 0x21..0x7F are > 0x20; SP, HTAB and 0x80..0xFF (negative) are not.
        int bits = _mm_movemask_epi8(_mm_cmpgt_epi8(v, sp)) ^ 0xFFFF;
        if (bits != 0) return p + __builtin_ctz(static_cast<unsigned>(bits));
        p += 16;
    }
#endif
    while (p < end && is_target(*p)) ++p;
    return p;
}

}  // namespace ferry::http1::detail
