#include "reactor/ip_prefix.hh"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace ferry::reactor {

namespace {

constexpr std::uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void from_v4(const in_addr& a, ip16& out) noexcept {
    std::memcpy(out.data(), v4_mapped_prefix, 12);
    std::memcpy(out.data() + 12, &a, 4);
}

// Bits [bits, 128) of `ip` are zero.
bool host_bits_zero(const ip16& ip, unsigned bits) noexcept {
    for (unsigned i = bits; i < 128; ++i)
        if (ip[i / 8] & (0x80u >> (i % 8))) return false;
    return true;
}

}  // namespace

bool is_v4_mapped(const ip16& ip) noexcept { return std::memcmp(ip.data(), v4_mapped_prefix, 12) == 0; }

bool ip_of(const address& a, ip16& out) noexcept {
    if (a.family() == AF_INET) {
        from_v4(reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr, out);
        return true;
    }
    if (a.family() == AF_INET6) {
        std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr, 16);
        return true;
    }
    return false;
}

result<ip_prefix> ip_prefix::parse(std::string_view text) noexcept {
    const std::size_t slash = text.find('/');
    const std::string_view host = text.substr(0, slash);
    char buf[64];
    if (host.empty() || host.size() >= sizeof buf) return fail(errc::invalid_argument, "expected an IP address");
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
    ip_prefix p;
    unsigned max_bits;
    in_addr v4{};
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        from_v4(v4, p.net_);
        p.v4_ = true;
        max_bits = 32;
    } else if (inet_pton(AF_INET6, buf, p.net_.data()) == 1) {
        max_bits = 128;
    } else {
        return fail(errc::invalid_argument, "expected a numeric IPv4 or IPv6 address");
    }
    unsigned bits = max_bits;
    if (slash != std::string_view::npos) {
        const std::string_view b = text.substr(slash + 1);
        auto [end, ec] = std::from_chars(b.data(), b.data() + b.size(), bits);
        if (b.empty() || b.size() > 3 || ec != std::errc() || end != b.data() + b.size() || bits > max_bits)
            return fail(errc::invalid_argument, p.v4_ ? "prefix length must be 0..32" : "prefix length must be 0..128");
    }
    p.bits_ = p.v4_ ? bits + 96 : bits;
    if (!host_bits_zero(p.net_, p.bits_))
        return fail(errc::invalid_argument, "address has bits set below the prefix length");
    return p;
}

bool ip_prefix::contains(const ip16& ip) const noexcept {
    const unsigned whole = bits_ / 8, rest = bits_ % 8;
    if (std::memcmp(ip.data(), net_.data(), whole) != 0) return false;
    if (rest == 0) return true;
    const std::uint8_t mask = static_cast<std::uint8_t>(0xff00u >> rest);
    return (ip[whole] & mask) == (net_[whole] & mask);
}

bool ip_prefix::contains(const address& a) const noexcept {
    ip16 ip;
    return ip_of(a, ip) && contains(ip);
}

std::string ip_prefix::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (v4_) {
        inet_ntop(AF_INET, net_.data() + 12, buf, sizeof buf);
        return std::string(buf) + "/" + std::to_string(bits_ - 96);
    }
    inet_ntop(AF_INET6, net_.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(bits_);
}

std::size_t client_key::hash() const noexcept {
    // FNV-1a over the 16 bytes: keys are addresses, not attacker-chosen strings of any length,
    // and the tables they index are bounded by the connection cap.
    std::uint64_t h = 1469598103934665603ull;
    for (std::uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
    return static_cast<std::size_t>(h);
}

client_key client_key_of(const address& a) noexcept {
    client_key k;
    if (!ip_of(a, k.bytes)) return {};
    if (!is_v4_mapped(k.bytes)) std::memset(k.bytes.data() + 8, 0, 8);  // IPv6: its /64
    return k;
}

}  // namespace ferry::reactor
