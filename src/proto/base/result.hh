#pragma once
// The one error vocabulary of the data path (STYLE 3, 4): no exceptions below src/control.
// `errc` is the project's error enum; `error` adds where it happened; `result<T>` is an
// expected-style value-or-error. Kernel results stay negative errno until the first typed
// boundary, where `from_errno` turns them into an `error`.
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "proto/base/assert.hh"

namespace ferry {

enum class errc : std::uint16_t {
    ok = 0,
    // Generic
    invalid_argument,
    out_of_memory,
    limit_exceeded,      // a configured limit (frame, header, packet, window, channels)
    closed,              // the peer or the caller closed the stream
    timeout,
    io,                  // a system call failed; `error::sys` holds the errno
    unsupported,
    // Parsing (any codec)
    malformed,           // input violates the grammar
    bad_length,          // a length field is impossible or inconsistent
    // HTTP/1.1
    http_header_too_large,   // -> 431
    http_too_many_headers,   // -> 431
    http_bad_request,        // -> 400
    http_smuggling,          // CL+TE, duplicate CL, ... -> 400
    http_body_too_large,     // -> 413
    http_unsupported_version,
    // WebSocket (RFC 6455)
    ws_protocol,         // -> close 1002
    ws_bad_utf8,         // -> close 1007
    ws_too_big,          // -> close 1009
    ws_policy,           // -> close 1008
    ws_handshake,        // bad upgrade request/response
    ws_deflate,          // permessage-deflate failure
    // SSH (RFC 4253/4252/4254)
    ssh_protocol,
    ssh_mac,
    ssh_kex,
    ssh_auth,
    ssh_channel,
    // Crypto / auth
    crypto,
    auth,
    // HTTP/1.1 (appended later; see http_* above)
    http_uri_too_long,       // request line over the limit -> 414
    http_not_implemented,    // unsupported Transfer-Encoding in a request -> 501
    // SSH (appended later; see ssh_* above)
    ssh_version,         // peer speaks no SSH-2.0 -> DISCONNECT protocol_version_not_supported
    ssh_host_key,        // host key rejected by the verifier -> host_key_not_verifiable
    // WebSocket (appended later; see ws_* above)
    ws_upgrade_required, // not a WebSocket upgrade, or an unsupported version -> 426
    // JWT (src/proto/jwt; RFC 7515/7518/7519). Stable names for the relay's 401 answers and the
    // audit log: token_expired is answered as "expired", every other token_* as "invalid".
    token_malformed,       // not a compact JWS; bad base64url, JSON or claim type
    token_too_large,       // over a jwt::limits bound
    token_alg_not_allowed, // alg none/unknown/outside the allow-list, or a `crit` header
    token_unknown_key,     // no key has its kid, or none has its alg
    token_key_mismatch,    // its kid names a key of another algorithm (confusion attempt)
    token_bad_signature,
    token_expired,         // exp + leeway <= now
    token_not_yet_valid,   // nbf (or iat) later than now + leeway
    token_bad_issuer,
    token_bad_audience,
    token_invalid,         // a required claim is missing or unusable (sub, exp)
    jwks_invalid,          // a key set or HMAC secret rejected at load time
    // TLS (src/proto/tls). `error::detail` names the reason (e.g. which certificate check failed).
    tls_handshake,         // no common version/suite/ALPN, peer alert, not TLS at all
    tls_verify,            // the peer's certificate was rejected (unknown CA, name, dates, ...)
    tls_protocol,          // after the handshake: bad record, failed MAC, peer fatal alert
};

// Human-readable name of an error code, stable for logs and metrics labels.
const char* to_string(errc e) noexcept;

struct error {
    errc code = errc::ok;
    // Byte offset into the input where parsing failed (0 if not a parse error).
    std::uint32_t offset = 0;
    // errno for errc::io (positive), 0 otherwise.
    std::int32_t sys = 0;
    // Static string describing the failure; never points at peer data.
    const char* detail = "";

    constexpr error() = default;
    constexpr error(errc c, const char* d = "", std::uint32_t off = 0) noexcept
        : code(c), offset(off), detail(d) {}
    static error from_errno(int negative_or_positive_errno, const char* d = "") noexcept {
        error e(errc::io, d);
        e.sys = negative_or_positive_errno < 0 ? -negative_or_positive_errno
                                               : negative_or_positive_errno;
        return e;
    }
};

// Tag used to construct a failed result: `return fail(errc::malformed, "bad opcode");`
struct failure {
    error err;
};
inline constexpr failure fail(errc c, const char* d = "", std::uint32_t off = 0) noexcept {
    return failure{error(c, d, off)};
}
inline constexpr failure fail(const error& e) noexcept { return failure{e}; }

template <class T>
class [[nodiscard]] result {
public:
    result(const T& v) : ok_(true) { new (&val_) T(v); }
    result(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(true) {
        new (&val_) T(std::move(v));
    }
    result(failure f) noexcept : ok_(false) { new (&err_) error(f.err); }
    result(const result& o) : ok_(o.ok_) {
        if (ok_) new (&val_) T(o.val_); else new (&err_) error(o.err_);
    }
    result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(o.ok_) {
        if (ok_) new (&val_) T(std::move(o.val_)); else new (&err_) error(o.err_);
    }
    result& operator=(result o) noexcept(std::is_nothrow_move_constructible_v<T>) {
        this->~result();
        new (this) result(std::move(o));
        return *this;
    }
    ~result() {
        if (ok_) val_.~T();
    }

    explicit operator bool() const noexcept { return ok_; }
    bool has_value() const noexcept { return ok_; }
    // The value of a failed result is a bug of the caller's: debug builds stop there.
    T& value() & noexcept {
        FERRY_DASSERT(ok_);
        return val_;
    }
    const T& value() const& noexcept {
        FERRY_DASSERT(ok_);
        return val_;
    }
    T&& value() && noexcept {
        FERRY_DASSERT(ok_);
        return std::move(val_);
    }
    T& operator*() & noexcept { return value(); }
    const T& operator*() const& noexcept { return value(); }
    T* operator->() noexcept { return &value(); }
    const T* operator->() const noexcept { return &value(); }
    const error& err() const noexcept { return err_; }
    errc code() const noexcept { return ok_ ? errc::ok : err_.code; }

private:
    bool ok_;
    union {
        T val_;
        error err_;
    };
};

template <>
class [[nodiscard]] result<void> {
public:
    result() noexcept = default;
    result(failure f) noexcept : ok_(false), err_(f.err) {}
    explicit operator bool() const noexcept { return ok_; }
    bool has_value() const noexcept { return ok_; }
    const error& err() const noexcept { return err_; }
    errc code() const noexcept { return ok_ ? errc::ok : err_.code; }

private:
    bool ok_ = true;
    error err_{};
};

using status = result<void>;

}  // namespace ferry

// Propagate a failed result: `FERRY_TRY(r, expr);` declares `r` and returns its error.
#define FERRY_TRY(var, expr)                              \
    auto var = (expr);                                    \
    if (!var) return ::ferry::fail(var.err())
