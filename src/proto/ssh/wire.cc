#include "proto/ssh/wire.hh"

#include <cstring>

namespace ferry::ssh {

const char* to_string(disconnect_reason r) noexcept {
    switch (r) {
    case disconnect_reason::none: return "none";
    case disconnect_reason::host_not_allowed_to_connect: return "host_not_allowed_to_connect";
    case disconnect_reason::protocol_error: return "protocol_error";
    case disconnect_reason::key_exchange_failed: return "key_exchange_failed";
    case disconnect_reason::reserved: return "reserved";
    case disconnect_reason::mac_error: return "mac_error";
    case disconnect_reason::compression_error: return "compression_error";
    case disconnect_reason::service_not_available: return "service_not_available";
    case disconnect_reason::protocol_version_not_supported: return "protocol_version_not_supported";
    case disconnect_reason::host_key_not_verifiable: return "host_key_not_verifiable";
    case disconnect_reason::connection_lost: return "connection_lost";
    case disconnect_reason::by_application: return "by_application";
    case disconnect_reason::too_many_connections: return "too_many_connections";
    case disconnect_reason::auth_cancelled_by_user: return "auth_cancelled_by_user";
    case disconnect_reason::no_more_auth_methods_available: return "no_more_auth_methods_available";
    case disconnect_reason::illegal_user_name: return "illegal_user_name";
    }
    return "unknown";
}

// ---- reader ----------------------------------------------------------------------------------

result<std::uint8_t> reader::u8() noexcept {
    if (remaining() < 1) return bad("truncated byte");
    return std::to_integer<std::uint8_t>(b_[off_++]);
}

result<bool> reader::boolean() noexcept {
    FERRY_TRY(v, u8());
    return *v != 0;
}

result<std::uint32_t> reader::u32() noexcept {
    if (remaining() < 4) return bad("truncated uint32");
    std::uint32_t v = load_be32(b_.data() + off_);
    off_ += 4;
    return v;
}

result<std::uint64_t> reader::u64() noexcept {
    if (remaining() < 8) return bad("truncated uint64");
    std::uint64_t v = load_be64(b_.data() + off_);
    off_ += 8;
    return v;
}

result<bytes> reader::string() noexcept {
    std::size_t start = off_;
    if (remaining() < 4) return bad("truncated string length");
    std::uint32_t n = load_be32(b_.data() + off_);
    if (n > remaining() - 4) {
        return fail(errc::malformed, "string length beyond payload", static_cast<std::uint32_t>(start));
    }
    bytes s = b_.subspan(off_ + 4, n);
    off_ += 4 + std::size_t(n);
    return s;
}

result<std::string_view> reader::text() noexcept {
    FERRY_TRY(s, string());
    return as_string(*s);
}

result<std::string_view> reader::name_list() noexcept {
    std::size_t start = off_;
    FERRY_TRY(s, string());
    std::string_view v = as_string(*s);
    if (!valid_name_list(v)) {
        return fail(errc::malformed, "invalid name-list", static_cast<std::uint32_t>(start));
    }
    return v;
}

result<bytes> reader::mpint() noexcept {
    std::size_t start = off_;
    FERRY_TRY(s, string());
    bytes v = *s;
    if (v.size() >= 2) {
        auto b0 = std::to_integer<unsigned>(v[0]);
        auto b1 = std::to_integer<unsigned>(v[1]);
        // A leading 0x00 is only needed before a byte with the top bit set (and 0xff before one
        // without): anything else is a non-canonical encoding.
        if ((b0 == 0x00 && !(b1 & 0x80)) || (b0 == 0xff && (b1 & 0x80))) {
            return fail(errc::malformed, "non-canonical mpint", static_cast<std::uint32_t>(start));
        }
    } else if (v.size() == 1 && std::to_integer<unsigned>(v[0]) == 0) {
        return fail(errc::malformed, "non-canonical mpint zero", static_cast<std::uint32_t>(start));
    }
    return v;
}

result<bytes> reader::raw(std::size_t n) noexcept {
    if (remaining() < n) return bad("truncated raw bytes");
    bytes s = b_.subspan(off_, n);
    off_ += n;
    return s;
}

status reader::expect_end() const noexcept {
    if (!empty()) return fail(errc::malformed, "trailing bytes", static_cast<std::uint32_t>(off_));
    return {};
}

// ---- writer ----------------------------------------------------------------------------------

writer& writer::u8(std::uint8_t v) {
    out_.push_back(std::byte(v));
    return *this;
}

writer& writer::u32(std::uint32_t v) {
    std::size_t n = out_.size();
    out_.resize(n + 4);
    store_be32(out_.data() + n, v);
    return *this;
}

writer& writer::u64(std::uint64_t v) {
    std::size_t n = out_.size();
    out_.resize(n + 8);
    store_be64(out_.data() + n, v);
    return *this;
}

writer& writer::string(bytes s) {
    u32(static_cast<std::uint32_t>(s.size()));
    return raw(s);
}

writer& writer::raw(bytes s) {
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
}

writer& writer::mpint_unsigned(bytes magnitude) {
    std::size_t i = 0;
    while (i < magnitude.size() && magnitude[i] == std::byte{0}) ++i;
    bytes m = magnitude.subspan(i);
    bool pad = !m.empty() && (std::to_integer<unsigned>(m[0]) & 0x80);
    u32(static_cast<std::uint32_t>(m.size() + (pad ? 1 : 0)));
    if (pad) u8(0);
    return raw(m);
}

// ---- name-lists ------------------------------------------------------------------------------

std::string_view name_iter::next() noexcept {
    if (rest_.empty()) return {};
    std::size_t c = rest_.find(',');
    std::string_view n = rest_.substr(0, c);
    rest_ = c == std::string_view::npos ? std::string_view{} : rest_.substr(c + 1);
    return n;
}

bool name_list_contains(std::string_view list, std::string_view name) noexcept {
    name_iter it(list);
    for (std::string_view n = it.next(); !n.empty(); n = it.next()) {
        if (n == name) return true;
    }
    return false;
}

bool valid_name_list(std::string_view list) noexcept {
    if (list.empty()) return true;
    std::size_t len = 0;
    for (char c : list) {
        if (c == ',') {
            if (len == 0) return false;
            len = 0;
            continue;
        }
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) return false;
        if (++len > 64) return false;
    }
    return len != 0;
}

}  // namespace ferry::ssh
