// Masking (every length, alignment and key phase) and UTF-8 validation (every class of invalid
// input, split at every byte).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/ws/mask.hh"
#include "proto/ws/utf8.hh"

using namespace ferry;
using namespace ferry::ws;

namespace {

std::vector<std::byte> reference_mask(const std::vector<std::byte>& in, const unsigned char key[4],
                                      std::size_t phase) {
    std::vector<std::byte> out(in);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] ^= std::byte(key[(phase + i) % 4]);
    return out;
}

}  // namespace

TEST(WsMask, EveryLengthAlignmentAndPhase) {
    std::mt19937 rng(1);
    const unsigned char key[4] = {0xA1, 0x02, 0xF3, 0x44};
    std::uint32_t kw;
    std::memcpy(&kw, key, 4);
    // Lengths around the small/bulk switch (64) and the vector widths; offsets 0..63 within a
    // 64-byte aligned buffer reach every alignment the AVX2/SSE2 heads have to handle.
    for (std::size_t len : {0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255,
                            256, 1000, 4096, 16384 + 3}) {
        for (std::size_t off = 0; off < 64; off += (len > 1000 ? 7 : 1)) {
            for (std::size_t phase = 0; phase < 4; ++phase) {
                alignas(64) static std::byte storage[20000];
                std::vector<std::byte> src(len);
                for (auto& b : src) b = std::byte(rng());
                if (len) std::memcpy(storage + off, src.data(), len);
                apply_mask(storage + off, len, kw, phase);
                auto want = reference_mask(src, key, phase);
                ASSERT_TRUE(len == 0 || std::memcmp(storage + off, want.data(), len) == 0)
                    << "len " << len << " off " << off << " phase " << phase;
                // copy_masked gives the same bytes without touching the source.
                std::vector<std::byte> dst(len + 1);
                copy_masked(dst.data() + (off & 1), src.data(), len, kw, phase);
                ASSERT_TRUE(len == 0 || std::memcmp(dst.data() + (off & 1), want.data(), len) == 0);
            }
        }
    }
}

TEST(WsMask, SplitAtEveryByteEqualsOneShot) {
    // A payload delivered in two pieces at any split point unmasks like one piece when the
    // second piece's phase is the first piece's length.
    std::mt19937 rng(2);
    const std::uint32_t kw = 0x9A3C51E7;
    std::vector<std::byte> src(300);
    for (auto& b : src) b = std::byte(rng());
    std::vector<std::byte> whole(src);
    apply_mask(whole.data(), whole.size(), kw, 0);
    for (std::size_t cut = 0; cut <= src.size(); ++cut) {
        std::vector<std::byte> v(src);
        apply_mask(v.data(), cut, kw, 0);
        apply_mask(v.data() + cut, v.size() - cut, kw, cut);
        ASSERT_EQ(v, whole) << cut;
    }
}

TEST(WsMask, IsItsOwnInverse) {
    std::vector<std::byte> v(5000, std::byte{0x5a});
    auto orig = v;
    apply_mask(v.data(), v.size(), 0x01020304, 3);
    EXPECT_NE(v, orig);
    apply_mask(v.data(), v.size(), 0x01020304, 3);
    EXPECT_EQ(v, orig);
}

// ---- UTF-8 ---------------------------------------------------------------------------------------

namespace {

bool valid(std::string_view s) { return valid_utf8(as_bytes(s)); }

// Validity when fed in two pieces split at every position must equal one-shot validity.
void expect_split_invariant(std::string_view s) {
    const bool want = valid(s);
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
        utf8_validator v;
        bool ok = v.feed(as_bytes(s.substr(0, cut)));
        ok = ok && v.feed(as_bytes(s.substr(cut)));
        ASSERT_EQ(want, ok && v.complete()) << "cut " << cut << " of " << s.size();
    }
    // And byte by byte.
    utf8_validator v;
    bool ok = true;
    for (char c : s) ok = ok && v.feed(as_bytes(std::string_view(&c, 1)));
    ASSERT_EQ(want, ok && v.complete());
}

}  // namespace

TEST(WsUtf8, ValidSequences) {
    EXPECT_TRUE(valid(""));
    EXPECT_TRUE(valid("hello"));
    EXPECT_TRUE(valid("\xc2\x80"));              // U+0080, smallest 2-byte
    EXPECT_TRUE(valid("\xdf\xbf"));              // U+07FF
    EXPECT_TRUE(valid("\xe0\xa0\x80"));          // U+0800, smallest 3-byte
    EXPECT_TRUE(valid("\xed\x9f\xbf"));          // U+D7FF, just below the surrogates
    EXPECT_TRUE(valid("\xee\x80\x80"));          // U+E000, just above
    EXPECT_TRUE(valid("\xef\xbf\xbf"));          // U+FFFF
    EXPECT_TRUE(valid("\xf0\x90\x80\x80"));      // U+10000, smallest 4-byte
    EXPECT_TRUE(valid("\xf4\x8f\xbf\xbf"));      // U+10FFFF, the largest
    EXPECT_TRUE(valid("κόσμε"));
    EXPECT_TRUE(valid("Hello-µ@ßöäüàá-UTF-8!!"));
}

TEST(WsUtf8, InvalidSequences) {
    EXPECT_FALSE(valid("\x80"));                 // lone continuation
    EXPECT_FALSE(valid("\xbf"));
    EXPECT_FALSE(valid("\xc0\x80"));             // overlong NUL
    EXPECT_FALSE(valid("\xc1\xbf"));             // overlong 2-byte
    EXPECT_FALSE(valid("\xe0\x80\x80"));         // overlong 3-byte
    EXPECT_FALSE(valid("\xe0\x9f\xbf"));
    EXPECT_FALSE(valid("\xf0\x80\x80\x80"));     // overlong 4-byte
    EXPECT_FALSE(valid("\xf0\x8f\xbf\xbf"));
    EXPECT_FALSE(valid("\xed\xa0\x80"));         // U+D800 surrogate
    EXPECT_FALSE(valid("\xed\xbf\xbf"));         // U+DFFF
    EXPECT_FALSE(valid("\xed\xa0\x80\xed\xb0\x80"));  // surrogate pair encoded as CESU
    EXPECT_FALSE(valid("\xf4\x90\x80\x80"));     // U+110000
    EXPECT_FALSE(valid("\xf5\x80\x80\x80"));     // F5..FF never valid
    EXPECT_FALSE(valid("\xff"));
    EXPECT_FALSE(valid("\xfe"));
    EXPECT_FALSE(valid("\xc2"));                 // truncated at the end
    EXPECT_FALSE(valid("\xe2\x82"));
    EXPECT_FALSE(valid("\xf0\x9f\x98"));
    EXPECT_FALSE(valid("\xc2\x41"));             // continuation missing
    EXPECT_FALSE(valid("\xe2\x28\xa1"));
    EXPECT_FALSE(valid("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"));
}

TEST(WsUtf8, TruncationOnlyFailsAtComplete) {
    utf8_validator v;
    EXPECT_TRUE(v.feed(as_bytes(std::string_view("ab\xf0\x9f"))));
    EXPECT_FALSE(v.complete());  // a message ending here is invalid
    EXPECT_TRUE(v.feed(as_bytes(std::string_view("\x98\x80"))));
    EXPECT_TRUE(v.complete());
}

TEST(WsUtf8, SplitAtEveryPosition) {
    for (std::string_view s :
         {"a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!", "\xf4\x8f\xbf\xbf\xed\x9f\xbf",
          "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x9f\xbf", "\xf0\x9f\x98", "abc\xc2"}) {
        expect_split_invariant(s);
    }
}

TEST(WsUtf8, InvalidByteAtEveryPositionOfLongAscii) {
    // The ASCII fast path works on 16/32-byte blocks: a bad byte must be found at any offset,
    // and a multi-byte sequence straddling a block edge must still be checked.
    for (std::size_t len : {15, 16, 17, 31, 32, 33, 64, 100}) {
        for (std::size_t pos = 0; pos < len; ++pos) {
            std::string s(len, 'x');
            s[pos] = '\xff';
            ASSERT_FALSE(valid(s)) << len << " " << pos;
            s[pos] = '\x80';
            ASSERT_FALSE(valid(s)) << len << " " << pos;
            if (pos + 1 < len) {
                s[pos] = '\xc3';
                s[pos + 1] = '\xa9';
                ASSERT_TRUE(valid(s)) << len << " " << pos;
                s[pos + 1] = 'x';
                ASSERT_FALSE(valid(s)) << len << " " << pos;
            }
        }
    }
}

TEST(WsUtf8, StaysFailed) {
    utf8_validator v;
    EXPECT_FALSE(v.feed(as_bytes(std::string_view("\xff"))));
    EXPECT_TRUE(v.failed());
    EXPECT_FALSE(v.feed(as_bytes(std::string_view("a"))));
    EXPECT_FALSE(v.complete());
    v.reset();
    EXPECT_TRUE(v.feed(as_bytes(std::string_view("a"))));
    EXPECT_TRUE(v.complete());
}

TEST(WsUtf8, AgreesWithReferenceDecoderOnRandomInput) {
    // Reference: a straightforward code-point decoder written from RFC 3629's table.
    auto reference = [](std::string_view s) {
        std::size_t i = 0;
        while (i < s.size()) {
            unsigned c = static_cast<unsigned char>(s[i]);
            unsigned n, cp;
            if (c < 0x80) { ++i; continue; }
            if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; }
            else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; }
            else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; }
            else return false;
            if (i + n >= s.size()) return false;
            for (unsigned k = 1; k <= n; ++k) {
                unsigned d = static_cast<unsigned char>(s[i + k]);
                if ((d & 0xC0) != 0x80) return false;
                cp = (cp << 6) | (d & 0x3F);
            }
            if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
            i += n + 1;
        }
        return true;
    };
    std::mt19937 rng(3);
    const char* pieces[] = {"a", "z", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80",
                            "\xed\xa0", "\xf4\x90", "\xc0", "\xe0\xa0", "\xff", "0123456789abcdef"};
    int valid_count = 0;
    for (int t = 0; t < 20000; ++t) {
        std::string s;
        int parts = 1 + static_cast<int>(rng() % 12);
        for (int p = 0; p < parts; ++p) s += pieces[rng() % (t % 3 == 0 ? 5 : 12)];
        bool want = reference(s);
        valid_count += want;
        ASSERT_EQ(want, valid(s)) << t;
        std::size_t cut = rng() % (s.size() + 1);
        utf8_validator v;
        bool ok = v.feed(as_bytes(std::string_view(s).substr(0, cut))) &&
                  v.feed(as_bytes(std::string_view(s).substr(cut)));
        ASSERT_EQ(want, ok && v.complete());
    }
    EXPECT_GT(valid_count, 1000);  // the generator does produce valid strings too
}

TEST(WsUtf8, VectorPathAgreesWithScalarPath) {
    // Inputs of 64+ bytes go through the AVX2 classifier (when the CPU has it); fed one byte at
    // a time they go through the scalar decoder. Both must agree, at every error position.
    const char* pieces[] = {"a", "0123456789abcdef", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                            "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xee\x80\x80",
                            // invalid pieces
                            "\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xe0\x9f\xbf",
                            "\xf0\x8f\xbf\xbf", "\xf5\x80\x80\x80", "\xff", "\xc3", "\xe2\x82",
                            "\xf0\x9f\x98", "\xc3\xa9\xa9"};
    std::mt19937 rng(17);
    int invalid = 0;
    for (int t = 0; t < 20000; ++t) {
        std::string s;
        const std::size_t target = 64 + rng() % 300;
        const bool clean = t % 2 == 0;
        while (s.size() < target) s += pieces[rng() % (clean ? 8 : 20)];
        utf8_validator bytewise;
        bool ok = true;
        for (char c : s) ok = ok && bytewise.feed(as_bytes(std::string_view(&c, 1)));
        const bool want = ok && bytewise.complete();
        if (clean) {
            ASSERT_TRUE(want);
        }
        invalid += !want;
        ASSERT_EQ(valid(s), want) << t;
        // Two large pieces: the vector path on each side of an arbitrary cut.
        const std::size_t cut = rng() % (s.size() + 1);
        utf8_validator v;
        bool ok2 = v.feed(as_bytes(std::string_view(s).substr(0, cut))) &&
                   v.feed(as_bytes(std::string_view(s).substr(cut)));
        ASSERT_EQ(ok2 && v.complete(), want) << t << " cut " << cut;
    }
    EXPECT_GT(invalid, 5000);
}

TEST(WsUtf8, EveryInvalidSequenceAtEveryOffsetOfALongString) {
    const std::string base = "abc\xc3\xa9" "def\xe2\x82\xac" "ghi\xf0\x9f\x98\x80" "jklmnopqrstuvwxyz" +
                             std::string(80, 'q');
    for (std::string_view bad : {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
                                 "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80",
                                 "\xf5\x80\x80\x80", "\xf8", "\xfe", "\xff", "\xc2\x41", "\xe2\x28\xa1",
                                 "\xe2\x82\x41", "\xf0\x9f\x98\x41", "\xc3\xa9\xa9"}) {
        for (std::size_t pos = 0; pos <= base.size(); ++pos) {
            // Insert only at code point boundaries of `base`.
            if (pos < base.size() && (static_cast<unsigned char>(base[pos]) & 0xC0) == 0x80) continue;
            std::string s = base;
            s.insert(pos, bad);
            ASSERT_FALSE(valid(s)) << pos;
        }
    }
    // Truncated sequences at the very end of a long string.
    for (std::string_view cut : {"\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xf0", "\xe2"}) {
        for (std::size_t len : {63, 64, 65, 95, 96, 97, 128}) {
            std::string s(len, 'x');
            s += cut;
            ASSERT_FALSE(valid(s)) << len;
            utf8_validator v;
            ASSERT_TRUE(v.feed(as_bytes(s)));  // not invalid yet: the next feed may complete it
            ASSERT_FALSE(v.complete());
        }
    }
    EXPECT_TRUE(valid(base));
}
