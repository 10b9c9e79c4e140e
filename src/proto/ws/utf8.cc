#include "proto/ws/utf8.hh"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
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

// Length in bytes of the sequence a lead byte starts (1 for anything that is not a valid-looking
// lead, so that the caller never waits for continuation bytes of garbage).
inline std::size_t seq_len(std::uint8_t b) noexcept {
    return b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
}

#if defined(__x86_64__)

// Vector validation of whole code points (the range must start and end on code point
// boundaries; feed() guarantees it). Each byte is classified together with the byte before it
// by three 16-entry lookups (high nibble of the previous byte, its low nibble, high nibble of
// the current byte); each bit of the result is one error class, set only when all three
// lookups agree on it:
//   0 too short   lead byte followed by a non-continuation      (C..F, any, 0..7|C..F)
//   1 too long    continuation after ASCII                        (0..7, any, 8..B)
//   2 overlong 3  E0 80..9F                                        (E, 0, 8..9)
//   3 too large   F4 90..BF, F5..FF 90..BF                         (F, 4..F, 9..B)
//   4 surrogate   ED A0..BF                                        (E, D, A..B)
//   5 overlong 2  C0, C1                                           (C, 0..1, 8..B)
//   6 overlong 4  F0 80..8F, and F5..FF 80..8F                     (F, 0|5..F, 8)
//   7 two conts   continuation after continuation                 (8..B, any, 8..B)
// Bit 7 is then compared with where a 3rd or 4th byte of a sequence must be (two or three bytes
// after an E0+ or F0+ lead): a continuation pair is an error exactly where none is expected,
// and a missing one exactly where one is.
constexpr std::uint8_t k_short = 1 << 0, k_long = 1 << 1, k_ovl3 = 1 << 2, k_large = 1 << 3,
                       k_surr = 1 << 4, k_ovl2 = 1 << 5, k_ovl4 = 1 << 6, k_two = 1 << 7;
constexpr std::uint8_t k_any = k_short | k_long | k_two;

__attribute__((target("avx2"))) inline __m256i table(const std::uint8_t (&t)[16]) noexcept {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t));
    return _mm256_broadcastsi128_si256(v);
}

struct avx2_consts {
    __m256i tab1, tab2, tab3;
};
struct avx2_state {
    __m256i prev;       // the previous block
    __m256i prev_open;  // non-zero where the previous block leaves a sequence open
    __m256i err;        // accumulated error bits
};

__attribute__((target("avx2"), always_inline)) inline void avx2_block(avx2_state& st, const avx2_consts& c,
                                                                       __m256i in) noexcept {
    const __m256i nib = _mm256_set1_epi8(0x0F);
    if (_mm256_movemask_epi8(in) == 0) {
        // ASCII: only a sequence left open by the previous block can be wrong.
        st.err = _mm256_or_si256(st.err, st.prev_open);
        st.prev_open = _mm256_setzero_si256();
        st.prev = in;
        return;
    }
    // The bytes 1, 2 and 3 positions earlier, across the block boundary.
    const __m256i t = _mm256_permute2x128_si256(st.prev, in, 0x21);
    const __m256i prev1 = _mm256_alignr_epi8(in, t, 15);
    const __m256i b1h = _mm256_shuffle_epi8(c.tab1, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), nib));
    const __m256i b1l = _mm256_shuffle_epi8(c.tab2, _mm256_and_si256(prev1, nib));
    const __m256i b2h = _mm256_shuffle_epi8(c.tab3, _mm256_and_si256(_mm256_srli_epi16(in, 4), nib));
    const __m256i special = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
    const __m256i prev2 = _mm256_alignr_epi8(in, t, 14);
    const __m256i prev3 = _mm256_alignr_epi8(in, t, 13);
    // 0x80 where a 3rd/4th byte must follow: two after an E0+ lead, three after an F0+ lead.
    const __m256i must = _mm256_or_si256(_mm256_subs_epu8(prev2, _mm256_set1_epi8(static_cast<char>(0xE0 - 0x80))),
                                         _mm256_subs_epu8(prev3, _mm256_set1_epi8(static_cast<char>(0xF0 - 0x80))));
    const __m256i must80 = _mm256_and_si256(must, _mm256_set1_epi8(static_cast<char>(0x80)));
    st.err = _mm256_or_si256(st.err, _mm256_xor_si256(must80, special));
    // Bytes that leave a sequence open at the end of the block: the last byte >= C0, the one
    // before >= E0, the one before that >= F0.
    const __m256i open_max = _mm256_setr_epi8(
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, static_cast<char>(0xEF),
        static_cast<char>(0xDF), static_cast<char>(0xBF));
    st.prev_open = _mm256_subs_epu8(in, open_max);
    st.prev = in;
}

__attribute__((target("avx2"))) bool valid_avx2(const std::uint8_t* p, std::size_t n) noexcept {
    static constexpr std::uint8_t t1[16] = {
        k_long, k_long, k_long, k_long, k_long, k_long, k_long, k_long,  // 0..7: ASCII
        k_two, k_two, k_two, k_two,                                      // 8..B: continuation
        k_short | k_ovl2,                                                // C
        k_short,                                                         // D
        k_short | k_ovl3 | k_surr,                                       // E
        k_short | k_large | k_ovl4,                                      // F
    };
    static constexpr std::uint8_t t2[16] = {
        k_any | k_ovl3 | k_ovl2 | k_ovl4,  // 0
        k_any | k_ovl2,                    // 1
        k_any, k_any,                      // 2, 3
        k_any | k_large,                   // 4
        k_any | k_large | k_ovl4, k_any | k_large | k_ovl4, k_any | k_large | k_ovl4,  // 5..7
        k_any | k_large | k_ovl4, k_any | k_large | k_ovl4, k_any | k_large | k_ovl4,  // 8..A
        k_any | k_large | k_ovl4, k_any | k_large | k_ovl4,                            // B, C
        k_any | k_large | k_ovl4 | k_surr,                                             // D
        k_any | k_large | k_ovl4, k_any | k_large | k_ovl4,                            // E, F
    };
    static constexpr std::uint8_t t3[16] = {
        k_short, k_short, k_short, k_short, k_short, k_short, k_short, k_short,  // 0..7
        k_long | k_ovl2 | k_two | k_ovl3 | k_ovl4,                              // 8
        k_long | k_ovl2 | k_two | k_ovl3 | k_large,                             // 9
        k_long | k_ovl2 | k_two | k_surr | k_large,                             // A
        k_long | k_ovl2 | k_two | k_surr | k_large,                             // B
        k_short, k_short, k_short, k_short,                                      // C..F
    };
    const avx2_consts c{table(t1), table(t2), table(t3)};
    avx2_state st{_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        avx2_block(st, c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    }
    if (i < n) {
        // The last partial block, padded with ASCII zeros (an open sequence before the padding
        // is then "too short").
        alignas(32) std::uint8_t last[32] = {};
        std::memcpy(last, p + i, n - i);
        avx2_block(st, c, _mm256_load_si256(reinterpret_cast<const __m256i*>(last)));
    }
    const __m256i err = _mm256_or_si256(st.err, st.prev_open);
    return _mm256_testz_si256(err, err) != 0;
}

bool cpu_has_avx2() noexcept {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return has;
}

#endif  // __x86_64__

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
#if defined(__x86_64__)
    if (n - i >= 64 && cpu_has_avx2()) {
        // Vector path over whole code points; the scalar loop below then takes a code point the
        // input ends inside of (and remembers it for the next call).
        std::size_t end = n;
        for (std::size_t back = 1; back <= 3 && back <= n - i; ++back) {
            const std::uint8_t b = p[n - back];
            if (b < 0x80) break;               // ASCII: nothing open
            if (b < 0xC0) continue;            // continuation: look further back
            if (seq_len(b) > back) end = n - back;  // this lead's sequence is not complete
            break;
        }
        if (!valid_avx2(p + i, end - i)) return fail();
        i = end;
    }
#endif
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
