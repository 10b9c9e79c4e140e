#pragma once
// TLS contexts: the configuration every session of one listener (server) or one relay target
// (client) shares. A context wraps one wolfSSL WOLFSSL_CTX, is built and validated completely
// by `create` (at start-up or by the control plane), is immutable afterwards, and is shared
// read-only by all shards through `std::shared_ptr<const ...>`.
//
// Thread safety (wolfSSL 5.5.4 as built by scripts/build-wolfssl, which is not SINGLE_THREADED):
// a WOLFSSL_CTX may be used by several threads at once to create sessions (wolfSSL_new) as long
// as nobody changes it after the first session exists. What ferry relies on, checked in the
// source of that release:
//   - wolfSSL_new only reads the context, except its reference count, which it changes under
//     the context's own mutex (`countMutex`);
//   - certificate verification (client) reads the CA table under the cert manager's mutex;
//   - the session cache is turned off on every context (it is a process-wide table);
//     resumption uses session tickets only, encrypted by our own callback (context.cc) with
//     keys fixed at construction. wolfSSL's default ticket callback rotates keys lazily from
//     inside handshakes, writing context state that other threads read without a lock; ours
//     writes nothing;
//   - the IO callbacks are plain functions set before any session exists;
//   - no session calls an API that fills context fields lazily (wolfSSL_get_certificate would
//     build the context's X509 on first use: it is not used here, and must not be).
// Every session (WOLFSSL) is then used by one thread at a time: the shard that owns its
// connection. It may move to another shard with its connection (hand-over); nothing in a
// WOLFSSL is bound to a thread (the error queue is per thread but ferry never reads it).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proto/base/result.hh"

struct WOLFSSL_CTX;

namespace ferry::tls {

// Lowest protocol version a context accepts. TLS 1.3 by default (SPEC R4).
enum class version : std::uint8_t { tls1_2, tls1_3 };

// What a server does when a client offers ALPN protocols and none of them is ours.
enum class alpn_mismatch : std::uint8_t {
    refuse,    // fatal no_application_protocol alert (RFC 7301 section 3.2)
    tolerate,  // continue without ALPN
};

// What a client checks about the server's certificate.
enum class verify_mode : std::uint8_t {
    verify,                // chain to a trusted CA, validity dates, host name
    insecure_skip_verify,  // nothing at all: only for development, and only when asked by name
};

struct server_options {
    // Certificate chain (leaf first, then intermediates) and private key, PEM. Either a file or
    // the PEM text itself (generated material, tests); the text wins when both are set.
    std::string cert_file;
    std::string key_file;
    std::string cert_pem;
    std::string key_pem;
    version min_version = version::tls1_3;
    version max_version = version::tls1_3;  // >= min_version (lowering it is for tests)
    // Protocols we speak, in our order of preference. Empty: no ALPN.
    std::vector<std::string> alpn{"http/1.1"};
    alpn_mismatch on_alpn_mismatch = alpn_mismatch::refuse;
    // Stateless resumption (RFC 8446 section 4.6.1). Tickets are sealed with AES-256-GCM under
    // a key fixed for the context's life; a new context (reload) starts a new key, so older
    // tickets fall back to a full handshake.
    bool session_tickets = true;
    std::chrono::seconds ticket_lifetime{7200};  // [1 s, 7 days] (RFC 8446 caps it at 7 days)
    // 48 bytes (16 name + 32 key) so that replicas share tickets; empty: random per context.
    std::string ticket_key;
};

struct client_options {
    // Trusted CAs, PEM. Empty both: the system roots in `system_ca_file`.
    std::string ca_file;
    std::string ca_pem;
    std::string system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    verify_mode verify = verify_mode::verify;
    version min_version = version::tls1_3;
    version max_version = version::tls1_3;  // >= min_version (lowering it is for tests, diagnose)
    std::vector<std::string> alpn{"http/1.1"};
};

class server_context {
public:
    // Loads and checks everything (the key must match the certificate). Errors name what is
    // wrong: errc::invalid_argument for options, errc::io for unreadable files (sys = errno),
    // errc::crypto for material wolfSSL refuses.
    static result<std::shared_ptr<const server_context>> create(const server_options& o);
    ~server_context();
    server_context(const server_context&) = delete;
    server_context& operator=(const server_context&) = delete;

    WOLFSSL_CTX* native() const noexcept { return ctx_; }
    const server_options& options() const noexcept { return opt_; }
    // The ALPN list in wolfSSL's comma-separated form ("http/1.1").
    const std::string& alpn_csv() const noexcept { return alpn_csv_; }

    struct ticket_keys {
        unsigned char name[16];
        unsigned char key[32];
    };

private:
    server_context() = default;
    WOLFSSL_CTX* ctx_ = nullptr;
    server_options opt_;
    std::string alpn_csv_;
    ticket_keys keys_{};
};

class client_context {
public:
    static result<std::shared_ptr<const client_context>> create(const client_options& o);
    ~client_context();
    client_context(const client_context&) = delete;
    client_context& operator=(const client_context&) = delete;

    WOLFSSL_CTX* native() const noexcept { return ctx_; }
    const client_options& options() const noexcept { return opt_; }
    const std::string& alpn_csv() const noexcept { return alpn_csv_; }

private:
    client_context() = default;
    WOLFSSL_CTX* ctx_ = nullptr;
    client_options opt_;
    std::string alpn_csv_;
};

namespace detail {
// wolfSSL_Init once per process (thread-safe); false if it failed.
bool library_init() noexcept;
// Whole file into `out`; errno on failure (0: ok).
int read_file(const std::string& path, std::string& out);
}  // namespace detail

}  // namespace ferry::tls
