#pragma once
// IP networks in CIDR notation and the key a client is counted by. Pure functions on bytes: no
// sockets, no DNS; usable from any thread.
//
//   auto p = ip_prefix::parse("10.0.0.0/8");   // also "2001:db8::/32", "192.0.2.7" (= /32)
//   p->contains(peer)                           // IPv4-mapped IPv6 peers match IPv4 prefixes
//   client_key_of(peer)                         // IPv4: the address; IPv6: its /64
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/base/result.hh"
#include "reactor/address.hh"

namespace ferry::reactor {

// 16 bytes of an address: IPv6 as is, IPv4 in the IPv4-mapped form ::ffff:a.b.c.d, so that a
// dual-stack listener's mapped peers and plain IPv4 peers compare equal.
using ip16 = std::array<std::uint8_t, 16>;
// The address of `a` (port dropped); false for a socket address that is not IP.
bool ip_of(const address& a, ip16& out) noexcept;
bool is_v4_mapped(const ip16& ip) noexcept;

class ip_prefix {
public:
    // "ADDR/BITS" or "ADDR" (all bits). ADDR is a numeric IPv4 or IPv6 literal (no brackets);
    // BITS is 0..32 or 0..128; host bits below the prefix must be zero ("10.0.0.1/8" is an
    // error: it usually means a typo). Errors: errc::invalid_argument with the reason.
    static result<ip_prefix> parse(std::string_view text) noexcept;
    bool contains(const address& a) const noexcept;
    bool contains(const ip16& ip) const noexcept;
    // "10.0.0.0/8", "2001:db8::/32".
    std::string to_string() const;

private:
    ip16 net_{};
    unsigned bits_ = 0;  // of the 128-bit form (an IPv4 /8 is /104 here)
    bool v4_ = false;
};

// What per-IP limits count by: the IPv4 address, or the /64 network of an IPv6 address (one
// subscriber gets at least a /64, so counting single IPv6 addresses would give one client 2^64
// keys). A non-IP address gives the all-zero key.
struct client_key {
    ip16 bytes{};
    bool operator==(const client_key&) const noexcept = default;
    std::size_t hash() const noexcept;
};
client_key client_key_of(const address& a) noexcept;

}  // namespace ferry::reactor
