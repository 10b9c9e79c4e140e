// ip_prefix and client_key: CIDR parsing and matching, per-client keys (no sockets).
#include "reactor/ip_prefix.hh"

#include <gtest/gtest.h>

namespace ferry::reactor {
namespace {

address at(std::string_view s) {
    auto a = address::parse(s);
    EXPECT_TRUE(a) << s;
    return a ? *a : address{};
}

address mapped(std::string_view v4) {  // ::ffff:a.b.c.d, as a dual-stack listener reports it
    return at("[::ffff:" + std::string(v4) + "]:1");
}

TEST(IpPrefix, ParsesAndPrints) {
    for (std::string_view s : {"10.0.0.0/8", "192.0.2.7/32", "0.0.0.0/0", "2001:db8::/32", "::1/128", "::/0"}) {
        auto p = ip_prefix::parse(s);
        ASSERT_TRUE(p) << s;
        EXPECT_EQ(p->to_string(), s);
    }
    EXPECT_EQ(ip_prefix::parse("192.0.2.7")->to_string(), "192.0.2.7/32");
    EXPECT_EQ(ip_prefix::parse("fe80::1")->to_string(), "fe80::1/128");
}

TEST(IpPrefix, RefusesWhatIsNotACidr) {
    for (std::string_view s : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8x", "10.0.0.0/-1",
                               "10.0.0.1/8", "2001:db8::1/32", "localhost", "10.0.0", "[::1]/128", "1.2.3.4:80",
                               "10.0.0.0/0008"}) {
        EXPECT_FALSE(ip_prefix::parse(s)) << s;
    }
}

TEST(IpPrefix, Contains) {
    auto p = *ip_prefix::parse("10.1.0.0/16");
    EXPECT_TRUE(p.contains(at("10.1.2.3:80")));
    EXPECT_TRUE(p.contains(at("10.1.255.255:1")));
    EXPECT_FALSE(p.contains(at("10.2.0.0:1")));
    EXPECT_TRUE(p.contains(mapped("10.1.9.9")));  // the same client seen by a [::] listener
    EXPECT_FALSE(p.contains(at("[::1]:1")));
    auto odd = *ip_prefix::parse("192.168.0.0/23");  // a prefix that ends inside a byte
    EXPECT_TRUE(odd.contains(at("192.168.1.200:1")));
    EXPECT_FALSE(odd.contains(at("192.168.2.0:1")));
    auto v6 = *ip_prefix::parse("2001:db8:abcd::/48");
    EXPECT_TRUE(v6.contains(at("[2001:db8:abcd:12::1]:1")));
    EXPECT_FALSE(v6.contains(at("[2001:db8:abce::1]:1")));
    EXPECT_FALSE(v6.contains(at("10.0.0.1:1")));
    EXPECT_TRUE(ip_prefix::parse("0.0.0.0/0")->contains(at("203.0.113.9:1")));
    EXPECT_FALSE(ip_prefix::parse("0.0.0.0/0")->contains(at("[2001:db8::1]:1")));  // IPv4 only
    EXPECT_FALSE(p.contains(address{}));  // not an IP address at all
}

TEST(ClientKey, Ipv4ByAddressIpv6ByItsSlash64) {
    EXPECT_EQ(client_key_of(at("192.0.2.1:1000")), client_key_of(at("192.0.2.1:2000")));
    EXPECT_EQ(client_key_of(at("192.0.2.1:1")), client_key_of(mapped("192.0.2.1")));
    EXPECT_NE(client_key_of(at("192.0.2.1:1")), client_key_of(at("192.0.2.2:1")));
    // One subscriber's /64: every address in it is one client.
    EXPECT_EQ(client_key_of(at("[2001:db8:1:2::1]:1")), client_key_of(at("[2001:db8:1:2:ffff::9]:1")));
    EXPECT_NE(client_key_of(at("[2001:db8:1:2::1]:1")), client_key_of(at("[2001:db8:1:3::1]:1")));
    EXPECT_EQ(client_key_of(at("192.0.2.1:1")).hash(), client_key_of(at("192.0.2.1:9")).hash());
}

}  // namespace
}  // namespace ferry::reactor
