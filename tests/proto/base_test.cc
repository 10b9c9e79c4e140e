#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "proto/base/buffer.hh"
#include "proto/base/log.hh"
#include "proto/base/result.hh"

using namespace ferry;

namespace {

result<int> parse_digit(char c) {
    if (c < '0' || c > '9') return fail(errc::malformed, "not a digit", 3);
    return c - '0';
}

result<int> twice(char c) {
    FERRY_TRY(d, parse_digit(c));
    return *d * 2;
}

}  // namespace

TEST(Result, ValueAndError) {
    auto ok = parse_digit('7');
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 7);
    auto bad = parse_digit('x');
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.code(), errc::malformed);
    EXPECT_EQ(bad.err().offset, 3u);
    EXPECT_STREQ(bad.err().detail, "not a digit");
    EXPECT_STREQ(to_string(bad.code()), "malformed");
}

#ifdef FERRY_DEBUG
TEST(ResultDeathTest, TheValueOfAFailedResultStopsDebugBuilds) {
    result<int> r = fail(errc::malformed, "bad");
    EXPECT_DEATH((void)r.value(), "ok_");
    EXPECT_DEATH((void)*r, "ok_");
}
#endif

TEST(Result, TryPropagates) {
    EXPECT_EQ(*twice('4'), 8);
    EXPECT_EQ(twice('z').code(), errc::malformed);
}

TEST(Result, HoldsMoveOnlyTypes) {
    result<std::string> r(std::string(100, 'a'));
    result<std::string> moved(std::move(r));
    EXPECT_EQ(moved->size(), 100u);
    status s = fail(errc::timeout);
    EXPECT_EQ(s.code(), errc::timeout);
    status good;
    EXPECT_TRUE(good);
}

TEST(Result, FromErrno) {
    error e = error::from_errno(-11, "recv");
    EXPECT_EQ(e.code, errc::io);
    EXPECT_EQ(e.sys, 11);
}

TEST(BufferChain, SmallAppendsAreCoalesced) {
    buffer_chain c;
    for (int i = 0; i < 100; ++i) c.append_copy(std::string_view("abc"));
    EXPECT_EQ(c.size(), 300u);
    EXPECT_EQ(c.fragments(), 1u);
    std::string s = c.to_string();
    EXPECT_EQ(s.substr(0, 6), "abcabc");
}

TEST(BufferChain, LargeSlicesAreLinkedNotCopied) {
    buffer_chain c;
    slice big = slice::allocate(4096);
    std::memset(big.data(), 'x', big.size());
    const std::byte* p = big.data();
    c.append_copy(std::string_view("HDR"));
    c.append(big);
    c.append_copy(std::string_view("TRL"));
    ASSERT_EQ(c.fragments(), 3u);
    iovec iov[8];
    ASSERT_EQ(c.to_iovec(iov, 8), 3u);
    EXPECT_EQ(iov[1].iov_base, p);  // the payload itself, not a copy
    EXPECT_EQ(iov[1].iov_len, 4096u);
    // The chain holds a reference: the block outlives our handle.
    EXPECT_EQ(big.get_owner()->refs, 2u);
    c.consume(3 + 4096);
    EXPECT_EQ(big.get_owner()->refs, 1u);
    EXPECT_EQ(c.to_string(), "TRL");
}

TEST(BufferChain, ConsumeAcrossFragmentsAndPartially) {
    buffer_chain c;
    c.append(slice::copy_of(as_bytes(std::string(1000, 'a'))));
    c.append(slice::copy_of(as_bytes(std::string(1000, 'b'))));
    c.consume(999);
    EXPECT_EQ(c.size(), 1001u);
    std::string s = c.to_string();
    EXPECT_EQ(s[0], 'a');
    EXPECT_EQ(s[1], 'b');
    c.consume(1001);
    EXPECT_TRUE(c.empty());
    EXPECT_EQ(c.fragments(), 0u);
}

TEST(BufferChain, PrepareCommit) {
    buffer_chain c;
    c.append_copy(std::string_view("ab"));
    mut_bytes w = c.prepare(4);
    std::memcpy(w.data(), "cdef", 4);
    c.commit(3);
    c.append_copy(std::string_view("Z"));
    EXPECT_EQ(c.to_string(), "abcdeZ");
    EXPECT_EQ(c.fragments(), 1u);
    // prepare larger than the block size gets its own block.
    mut_bytes big = c.prepare(100000);
    std::memset(big.data(), 'q', big.size());
    c.commit(100000);
    EXPECT_EQ(c.size(), 6u + 100000u);
}

TEST(BufferChain, SliceSubSharesMemory) {
    slice s = slice::copy_of(as_bytes(std::string_view("hello world")));
    slice w = s.sub(6, 5);
    EXPECT_EQ(as_string(w.view()), "world");
    EXPECT_EQ(w.get_owner(), s.get_owner());
    EXPECT_EQ(s.get_owner()->refs, 2u);
}

TEST(BufferChain, MoveChainToChain) {
    buffer_chain a, b;
    a.append_copy(std::string_view("one"));
    b.append_copy(std::string_view("two"));
    a.append(std::move(b));
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(a.to_string(), "onetwo");
}

TEST(Endian, RoundTrip) {
    std::byte buf[8];
    store_be64(buf, 0x0102030405060708ull);
    EXPECT_EQ(load_be64(buf), 0x0102030405060708ull);
    store_be16(buf, 0xBEEF);
    EXPECT_EQ(load_be16(buf), 0xBEEF);
    store_be32(buf, 0xDEADBEEF);
    EXPECT_EQ(load_be32(buf), 0xDEADBEEFu);
}

TEST(Slice, PartOrCopySharesInsideAndCopiesOutside) {
    slice in = slice::copy_of(bytes(reinterpret_cast<const std::byte*>("abcdefgh"), 8));
    slice inner = slice::part_or_copy(&in, in.view().subspan(2, 3));
    EXPECT_EQ(inner.data(), in.data() + 2);  // shared, not copied
    EXPECT_EQ(inner.get_owner(), in.get_owner());
    EXPECT_EQ(inner.size(), 3u);
    std::byte other[4] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
    slice outer = slice::part_or_copy(&in, bytes(other, 4));
    EXPECT_NE(outer.data(), other);  // a copy
    EXPECT_NE(outer.get_owner(), in.get_owner());
    EXPECT_EQ(std::memcmp(outer.data(), other, 4), 0);
    // The very end of `in` is still inside.
    slice tail = slice::part_or_copy(&in, bytes(in.data() + 6, 2));
    EXPECT_EQ(tail.data(), in.data() + 6);
    EXPECT_NE(slice::part_or_copy(nullptr, in.view()).data(), in.data());
}

// log::gate: a burst per window, then the rest counted and reported with the next line.
TEST(LogGate, BurstThenCountedThenReported) {
    ferry::log::gate g(3, 1000);
    std::uint64_t held = 99;
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(g.pass(5000, held));
        EXPECT_EQ(held, 0u);
    }
    for (int i = 0; i < 5000; ++i) EXPECT_FALSE(g.pass(5000 + i % 999, held));
    EXPECT_EQ(g.held(), 5000u);
    EXPECT_TRUE(g.pass(6000, held));  // the next window
    EXPECT_EQ(held, 5000u);
    EXPECT_TRUE(g.pass(6001, held));
    EXPECT_EQ(held, 0u);
    // A clock that goes back starts a new window rather than stalling.
    EXPECT_TRUE(g.pass(10, held));
}
