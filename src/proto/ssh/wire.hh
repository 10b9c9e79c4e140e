#pragma once
// SSH wire data types (RFC 4251 §5): byte, boolean, uint32, uint64, string, mpint, name-list.
//
// `reader` walks a payload that is already in memory (a decrypted packet). Every read checks the
// bytes left first and fails with errc::malformed (offset = where the bad field starts); a reader
// never reads past its end and never copies: strings come back as views into the payload, valid
// as long as the payload is.
//
// `writer` appends to a caller-owned std::vector<std::byte> (payloads are built there and then
// sealed into the output chain by the packet layer).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ssh {

// Message numbers (RFC 4250 §4.1, RFC 8308).
namespace msg {
inline constexpr std::uint8_t disconnect = 1;
inline constexpr std::uint8_t ignore = 2;
inline constexpr std::uint8_t unimplemented = 3;
inline constexpr std::uint8_t debug = 4;
inline constexpr std::uint8_t service_request = 5;
inline constexpr std::uint8_t service_accept = 6;
inline constexpr std::uint8_t ext_info = 7;
inline constexpr std::uint8_t kexinit = 20;
inline constexpr std::uint8_t newkeys = 21;
inline constexpr std::uint8_t kex_ecdh_init = 30;
inline constexpr std::uint8_t kex_ecdh_reply = 31;
// 50..79 user authentication, 80..127 connection protocol: handed to the upper layers.
inline constexpr std::uint8_t userauth_first = 50;
inline constexpr std::uint8_t userauth_request = 50;
inline constexpr std::uint8_t userauth_failure = 51;
inline constexpr std::uint8_t userauth_success = 52;
inline constexpr std::uint8_t userauth_banner = 53;
inline constexpr std::uint8_t userauth_pk_ok = 60;
inline constexpr std::uint8_t connection_first = 80;
}  // namespace msg

// SSH_MSG_DISCONNECT reason codes (RFC 4250 §4.2.2).
enum class disconnect_reason : std::uint32_t {
    none = 0,  // not a wire value: "no disconnect"
    host_not_allowed_to_connect = 1,
    protocol_error = 2,
    key_exchange_failed = 3,
    reserved = 4,
    mac_error = 5,
    compression_error = 6,
    service_not_available = 7,
    protocol_version_not_supported = 8,
    host_key_not_verifiable = 9,
    connection_lost = 10,
    by_application = 11,
    too_many_connections = 12,
    auth_cancelled_by_user = 13,
    no_more_auth_methods_available = 14,
    illegal_user_name = 15,
};
const char* to_string(disconnect_reason r) noexcept;

class reader {
public:
    reader() = default;
    explicit reader(bytes b) noexcept : b_(b) {}

    result<std::uint8_t> u8() noexcept;
    // RFC 4251: any non-zero value is TRUE.
    result<bool> boolean() noexcept;
    result<std::uint32_t> u32() noexcept;
    result<std::uint64_t> u64() noexcept;
    // A `string`: uint32 length + that many bytes (arbitrary binary).
    result<bytes> string() noexcept;
    // A `string` viewed as text (no validation beyond the length).
    result<std::string_view> text() noexcept;
    // A `name-list`: comma-separated, non-empty names of printable US-ASCII without commas.
    // The empty list is valid.
    result<std::string_view> name_list() noexcept;
    // An `mpint` in canonical two's complement form (no superfluous leading 0x00/0xff byte).
    // Returns the raw encoding (the bytes after the length).
    result<bytes> mpint() noexcept;
    // `n` raw bytes.
    result<bytes> raw(std::size_t n) noexcept;

    // Fails unless every byte was consumed (trailing garbage is a protocol error).
    status expect_end() const noexcept;

    std::size_t remaining() const noexcept { return b_.size() - off_; }
    std::size_t offset() const noexcept { return off_; }
    bool empty() const noexcept { return off_ == b_.size(); }
    bytes rest() const noexcept { return b_.subspan(off_); }

private:
    failure bad(const char* what) const noexcept {
        return fail(errc::malformed, what, static_cast<std::uint32_t>(off_));
    }
    bytes b_;
    std::size_t off_ = 0;
};

class writer {
public:
    explicit writer(std::vector<std::byte>& out) noexcept : out_(out) {}

    writer& u8(std::uint8_t v);
    writer& boolean(bool v) { return u8(v ? 1 : 0); }
    writer& u32(std::uint32_t v);
    writer& u64(std::uint64_t v);
    writer& string(bytes s);
    writer& string(std::string_view s) { return string(as_bytes(s)); }
    writer& raw(bytes s);
    // Writes `magnitude` (unsigned, big-endian, may have leading zeros) as a positive mpint:
    // leading zeros stripped, a 0x00 prepended when the top bit is set, zero as length 0.
    writer& mpint_unsigned(bytes magnitude);

    std::vector<std::byte>& buffer() noexcept { return out_; }

private:
    std::vector<std::byte>& out_;
};

// ---- name-list helpers -----------------------------------------------------------------------

// Iterates the names of a (validated) name-list.
class name_iter {
public:
    explicit name_iter(std::string_view list) noexcept : rest_(list) {}
    // Next name, or an empty view at the end.
    std::string_view next() noexcept;

private:
    std::string_view rest_;
};

bool name_list_contains(std::string_view list, std::string_view name) noexcept;

// Checks a name-list as received (RFC 4251 §5). Returns false on an empty name, a control or
// non-ASCII byte, or a name longer than 64 bytes (RFC 4250 §4.6.1).
bool valid_name_list(std::string_view list) noexcept;

}  // namespace ferry::ssh
