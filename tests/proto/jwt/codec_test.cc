// base64url (strict, unpadded) and the strict JSON reader.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "proto/jwt/base64url.hh"
#include "proto/jwt/json.hh"

using namespace ferry;
using namespace ferry::jwt;

namespace {

std::string b64(std::string_view s) { return base64url::encode(as_bytes(s)); }
errc dec_err(std::string_view s) {
    auto r = base64url::decode(s);
    return r ? errc::ok : r.code();
}

TEST(Base64url, Rfc4648VectorsWithoutPadding) {
    EXPECT_EQ(b64(""), "");
    EXPECT_EQ(b64("f"), "Zg");
    EXPECT_EQ(b64("fo"), "Zm8");
    EXPECT_EQ(b64("foo"), "Zm9v");
    EXPECT_EQ(b64("foob"), "Zm9vYg");
    EXPECT_EQ(b64("fooba"), "Zm9vYmE");
    EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
    EXPECT_EQ(*base64url::decode("Zm9vYmFy"), "foobar");
    EXPECT_EQ(*base64url::decode("Zm9vYmE"), "fooba");
    EXPECT_EQ(*base64url::decode("Zg"), "f");
    EXPECT_EQ(*base64url::decode(""), "");
}

TEST(Base64url, UsesTheUrlAlphabet) {
    const char raw[] = {char(0xfb), char(0xff), char(0xbf)};
    EXPECT_EQ(b64(std::string_view(raw, 3)), "-_-_");
    EXPECT_EQ(*base64url::decode("-_-_"), std::string(raw, 3));
}

TEST(Base64url, RoundTripsEveryLength) {
    std::mt19937 rng(7);
    for (std::size_t n = 0; n < 200; ++n) {
        std::string s(n, '\0');
        for (auto& c : s) c = char(rng());
        std::string e = b64(s);
        EXPECT_EQ(e.size(), base64url::encoded_size(n));
        EXPECT_EQ(e.find('='), std::string::npos);
        auto d = base64url::decode(e);
        ASSERT_TRUE(d) << n;
        EXPECT_EQ(*d, s);
        EXPECT_EQ(base64url::decoded_size(e.size()), n);
    }
}

TEST(Base64url, RejectsPaddingAndForeignBytes) {
    EXPECT_EQ(dec_err("Zg=="), errc::malformed);
    EXPECT_EQ(dec_err("Zm8="), errc::malformed);
    EXPECT_EQ(dec_err("Zm9v+mFy"), errc::malformed);
    EXPECT_EQ(dec_err("Zm9v/mFy"), errc::malformed);
    EXPECT_EQ(dec_err("Zm9v mFy"), errc::malformed);
    EXPECT_EQ(dec_err(std::string_view("Zm9v\0mFy", 8)), errc::malformed);
    EXPECT_EQ(dec_err("Zm9v\nmFy"), errc::malformed);
    EXPECT_EQ(dec_err("Zm9vYmF\xff"), errc::malformed);
    auto r = base64url::decode("Zm9v*mFy");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.err().offset, 4u);
    r = base64url::decode("Zm9vYmF=");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.err().offset, 7u);
    EXPECT_STREQ(r.err().detail, "base64url padding is not allowed");
}

TEST(Base64url, RejectsImpossibleLengths) {
    EXPECT_EQ(dec_err("Z"), errc::malformed);
    EXPECT_EQ(dec_err("Zm9vY"), errc::malformed);
    EXPECT_EQ(base64url::decoded_size(5), SIZE_MAX);
}

// Exactly one text per byte string: every 2- and 3-character tail decodes iff it is the
// canonical encoding of what it decodes to.
TEST(Base64url, AcceptsOnlyCanonicalTails) {
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int accepted2 = 0, accepted3 = 0;
    for (char a : alphabet)
        for (char b : alphabet) {
            std::string t{a, b};
            auto d = base64url::decode(t);
            if (d) {
                ++accepted2;
                EXPECT_EQ(b64(*d), t);
            } else {
                EXPECT_STREQ(d.err().detail, "non-canonical base64url tail");
            }
            std::string t3{'Q', a, b};
            auto d3 = base64url::decode(t3);
            if (d3) {
                ++accepted3;
                EXPECT_EQ(b64(*d3), t3);
            }
        }
    EXPECT_EQ(accepted2, 256);    // one per byte value
    EXPECT_EQ(accepted3, 1024);   // 'Q' fixed: 4 * 256 byte pairs
    EXPECT_EQ(dec_err("Zh"), errc::malformed);
    EXPECT_EQ(dec_err("Zm9"), errc::malformed);
}

TEST(Base64url, ShortOutputBufferIsAnError) {
    std::byte out[2];
    auto r = base64url::decode("Zm9v", out);
    EXPECT_EQ(r.code(), errc::invalid_argument);
}

// ---- JSON -----------------------------------------------------------------------------------

json::document must_parse(std::string_view s, const json::limits& l = {}) {
    auto r = json::parse(s, l);
    EXPECT_TRUE(r) << s << ": " << (r ? "" : r.err().detail);
    return r ? std::move(*r) : json::document{};
}
errc parse_err(std::string_view s, const json::limits& l = {}) {
    auto r = json::parse(s, l);
    return r ? errc::ok : r.code();
}

TEST(Json, ParsesAnObjectWithEveryKind) {
    auto d = must_parse(R"( {"s":"x","n":-12,"f":1.5e3,"t":true,"F":false,"z":null,"a":[1,[2]],"o":{"k":"v"}} )");
    const auto& r = d.root();
    ASSERT_EQ(r.k, json::kind::object);
    EXPECT_EQ(r.count, 8u);
    EXPECT_EQ(d.str(*d.find(r, "s")), "x");
    const auto* n = d.find(r, "n");
    EXPECT_TRUE(n->integral);
    EXPECT_EQ(n->i, -12);
    const auto* f = d.find(r, "f");
    EXPECT_FALSE(f->integral);
    EXPECT_EQ(f->num, 1500.0);
    EXPECT_TRUE(d.find(r, "t")->b);
    EXPECT_EQ(d.find(r, "F")->k, json::kind::boolean);
    EXPECT_FALSE(d.find(r, "F")->b);
    EXPECT_EQ(d.find(r, "z")->k, json::kind::null);
    const auto* a = d.find(r, "a");
    EXPECT_EQ(a->count, 2u);
    EXPECT_EQ(d.at(d.at(a->first).next).k, json::kind::array);
    EXPECT_EQ(d.str(*d.find(*d.find(r, "o"), "k")), "v");
    EXPECT_EQ(d.find(r, "missing"), nullptr);
    // Members in document order.
    std::string keys;
    for (auto i = r.first; i != json::npos; i = d.at(i).next) keys += d.key(d.at(i));
    EXPECT_EQ(keys, "snftFzao");
}

TEST(Json, DecodesEscapes) {
    auto d = must_parse(R"(["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u2603\ud83d\ude80", "\u0041"])");
    auto i = d.root().first;
    EXPECT_EQ(d.str(d.at(i)), "a\"b\\c/d\b\f\n\r\t");
    i = d.at(i).next;
    EXPECT_EQ(d.str(d.at(i)), "\xc3\xa9\xe2\x98\x83\xf0\x9f\x9a\x80");
    EXPECT_EQ(d.str(d.at(d.at(i).next)), "A");
}

TEST(Json, NumbersFollowTheGrammar) {
    for (const char* ok : {"0", "-0", "1", "-1", "0.5", "1e3", "1E-2", "1.25e+2", "123456789012"})
        EXPECT_EQ(parse_err(ok), errc::ok) << ok;
    for (const char* bad : {"01", "-", "1.", ".5", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "--1", "1.2.3"})
        EXPECT_EQ(parse_err(bad), errc::malformed) << bad;
    auto big = must_parse("123456789012345678901234567890");
    EXPECT_FALSE(big.root().integral);
    EXPECT_GT(big.root().num, 1e29);
    auto huge = must_parse("1e400");
    EXPECT_TRUE(std::isnan(huge.root().num));
    auto i64 = must_parse("9223372036854775807");
    EXPECT_TRUE(i64.root().integral);
    EXPECT_EQ(i64.root().i, INT64_MAX);
}

TEST(Json, RejectsWhatRfc8259Forbids) {
    for (const char* bad : {"", " ", "[1,]", R"({"a":1,})", "[1 2]", R"({"a" 1})", R"({a:1})", "{'a':1}",
                            "// c\n1", "[1]/*c*/", "tru", "nul", "[", "{", R"({"a":)", "\"abc", "[1]]", "1 2",
                            "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"a\tb\"", "\"a\nb\""})
        EXPECT_EQ(parse_err(bad), errc::malformed) << bad;
}

TEST(Json, RejectsBadUnicode) {
    EXPECT_EQ(parse_err(R"("\ud800")"), errc::malformed);          // lone high surrogate
    EXPECT_EQ(parse_err(R"("\udc00")"), errc::malformed);          // lone low surrogate
    EXPECT_EQ(parse_err(R"("\ud800\u0041")"), errc::malformed);    // high + non-low
    EXPECT_EQ(parse_err(R"("\u0000")"), errc::malformed);          // NUL is refused
    EXPECT_EQ(parse_err("\"\xc0\x80\""), errc::malformed);         // overlong NUL
    EXPECT_EQ(parse_err("\"\xed\xa0\x80\""), errc::malformed);     // UTF-8 surrogate
    EXPECT_EQ(parse_err("\"\xf4\x90\x80\x80\""), errc::malformed); // above U+10FFFF
    EXPECT_EQ(parse_err("\"\xe2\x98\""), errc::malformed);         // truncated sequence
    EXPECT_EQ(parse_err("\"\xff\""), errc::malformed);
    EXPECT_EQ(parse_err("\"\xe2\x98\x83\xf0\x9f\x9a\x80\""), errc::ok);
}

TEST(Json, RejectsDuplicateMemberNames) {
    EXPECT_EQ(parse_err(R"({"a":1,"a":2})"), errc::malformed);
    EXPECT_EQ(parse_err(R"({"a":1,"\u0061":2})"), errc::malformed);  // same name once unescaped
    EXPECT_EQ(parse_err(R"({"o":{"a":1},"p":{"a":1}})"), errc::ok);  // per object
    EXPECT_EQ(parse_err(R"({"o":{"a":1,"b":{"a":2},"a":3}})"), errc::malformed);
}

TEST(Json, DepthLimitIsExact) {
    json::limits l;
    l.max_depth = 3;
    EXPECT_EQ(parse_err("[[[1]]]", l), errc::ok);
    EXPECT_EQ(parse_err("[[[[1]]]]", l), errc::limit_exceeded);
    EXPECT_EQ(parse_err(R"({"a":{"b":{"c":1}}})", l), errc::ok);
    EXPECT_EQ(parse_err(R"({"a":{"b":{"c":{}}}})", l), errc::limit_exceeded);
    // Deep input is refused without deep recursion.
    std::string deep(100000, '[');
    EXPECT_EQ(parse_err(deep), errc::limit_exceeded);
}

TEST(Json, ValueMemberAndStringLimitsAreExact) {
    json::limits l;
    l.max_values = 4;
    EXPECT_EQ(parse_err("[1,2,3]", l), errc::ok);
    EXPECT_EQ(parse_err("[1,2,3,4]", l), errc::limit_exceeded);
    l = {};
    l.max_members = 2;
    EXPECT_EQ(parse_err(R"({"a":1,"b":2})", l), errc::ok);
    EXPECT_EQ(parse_err(R"({"a":1,"b":2,"c":3})", l), errc::limit_exceeded);
    EXPECT_EQ(parse_err("[1,2,3]", l), errc::limit_exceeded);
    l = {};
    l.max_string = 4;
    EXPECT_EQ(parse_err(R"("abcd")", l), errc::ok);
    EXPECT_EQ(parse_err(R"("abcde")", l), errc::limit_exceeded);
    EXPECT_EQ(parse_err(R"({"abcde":1})", l), errc::limit_exceeded);
    EXPECT_EQ(parse_err(R"("\u00e9\u00e9")", l), errc::ok);  // 4 bytes unescaped
}

TEST(Json, ErrorsCarryTheOffset) {
    auto r = json::parse(R"({"a":1,"a":2})");
    ASSERT_FALSE(r);
    EXPECT_STREQ(r.err().detail, "duplicate member name");
    EXPECT_EQ(r.err().offset, 10u);
    r = json::parse("[1,  x]");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.err().offset, 5u);
}

TEST(Json, DocumentIsReusable) {
    json::document d;
    ASSERT_TRUE(json::parse(R"({"a":"first"})", {}, d));
    ASSERT_TRUE(json::parse(R"({"b":"second"})", {}, d));
    EXPECT_EQ(d.find(d.root(), "a"), nullptr);
    EXPECT_EQ(d.str(*d.find(d.root(), "b")), "second");
    EXPECT_FALSE(json::parse("[", {}, d));
}

TEST(Json, AppendStringRoundTrips) {
    const std::string samples[] = {"", "plain", "q\"uote", "back\\slash", "ctl\x01\x1f\x7f", "nl\n\r\t",
                                   "\xc3\xa9\xf0\x9f\x9a\x80", "</script>"};
    for (const auto& s : samples) {
        ASSERT_TRUE(json::valid_utf8(s));
        std::string lit;
        json::append_string(lit, s);
        auto d = must_parse(lit);
        EXPECT_EQ(d.str(d.root()), s);
    }
    EXPECT_FALSE(json::valid_utf8("\xc3"));
    EXPECT_FALSE(json::valid_utf8("\xed\xa0\x80"));
}

}  // namespace
