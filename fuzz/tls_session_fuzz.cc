// Fuzz target `tls_session`: src/proto/tls sessions (wolfSSL on memory IO) fed hostile bytes,
// as a server (ClientHello and later) or as a client (after its ClientHello).
//
// Input: byte 0 chooses the configuration, the rest is the peer's bytes as chunks whose first
// byte gives their length (0xff: a 2-byte big-endian length follows) (STYLE 12), so every
// split point of wolfSSL's record reassembly and of our first-byte check is exercised.
//   bit 0   0: server, 1: client
//   bit 1   TLS 1.2 allowed (both roles)
//   bit 2   server: tolerate an ALPN mismatch; client: offer no ALPN
//   bit 3   client: insecure_skip_verify
// Invariants (a violation traps): need_more only once the chunk is used up; no plaintext before
// the handshake; handshake_done at most once; errors are sticky and have a TLS code; writes
// before the handshake or after a failure are refused; close_notify never crashes.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "proto/tls/certgen.hh"
#include "proto/tls/context.hh"
#include "proto/tls/session.hh"

using namespace ferry;

namespace {

#define CHECK(c)                   \
    do {                           \
        if (!(c)) __builtin_trap(); \
    } while (0)

struct contexts {
    std::shared_ptr<const tls::server_context> server[4];  // [allow 1.2][tolerate ALPN]
    std::shared_ptr<const tls::client_context> client[8];  // [allow 1.2][no ALPN][insecure]
};

const contexts& ctxs() {
    static const contexts c = [] {
        contexts x;
        auto cert = tls::generate_certificate({}, std::chrono::system_clock::now());
        CHECK(cert);
        for (int i = 0; i < 4; ++i) {
            tls::server_options o;
            o.cert_pem = cert->cert_pem;
            o.key_pem = cert->key_pem;
            if (i & 1) o.min_version = tls::version::tls1_2;
            if (i & 2) o.on_alpn_mismatch = tls::alpn_mismatch::tolerate;
            auto s = tls::server_context::create(o);
            CHECK(s);
            x.server[i] = *s;
        }
        for (int i = 0; i < 8; ++i) {
            tls::client_options o;
            o.ca_pem = cert->cert_pem;
            if (i & 1) o.min_version = tls::version::tls1_2;
            if (i & 2) o.alpn = {};
            if (i & 4) o.verify = tls::verify_mode::insecure_skip_verify;
            auto s = tls::client_context::create(o);
            CHECK(s);
            x.client[i] = *s;
        }
        return x;
    }();
    return c;
}

bool is_tls_error(errc e) {
    return e == errc::tls_handshake || e == errc::tls_verify || e == errc::tls_protocol || e == errc::out_of_memory;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t cfg = data[0];
    const contexts& c = ctxs();
    const bool client = cfg & 1;
    auto made = client ? tls::session::client(c.client[(cfg >> 1) & 7], "localhost")
                       : tls::session::server(c.server[(cfg >> 1) & 3]);
    CHECK(made);
    tls::session& s = *made;
    buffer_chain out;
    CHECK(s.start(out));
    CHECK(client == !out.empty());  // only a client speaks first

    int handshakes = 0;
    errc failed = errc::ok;
    std::size_t pos = 1;
    while (pos < size && failed == errc::ok) {
        std::size_t n = data[pos++];
        if (n == 0xff) {
            if (pos + 2 > size) break;
            n = (std::size_t(data[pos]) << 8) | data[pos + 1];
            pos += 2;
        }
        n = std::min(n, size - pos);
        bytes in(reinterpret_cast<const std::byte*>(data + pos), n);
        pos += n;
        for (;;) {
            auto ev = s.next(in, out);
            if (!ev) {
                failed = ev.code();
                CHECK(is_tls_error(failed));
                CHECK(s.failed());
                break;
            }
            if (ev->type == tls::event_type::need_more) {
                CHECK(in.empty());
                break;
            }
            if (ev->type == tls::event_type::handshake_done) ++handshakes;
            if (ev->type == tls::event_type::data) CHECK(s.handshake_done() && !ev->data.empty());
        }
        out.clear();
    }
    CHECK(handshakes <= 1);
    if (failed != errc::ok) {
        bytes none;
        CHECK(s.next(none, out).code() == failed);  // sticky
        CHECK(!s.write(as_bytes("x"), out));
    } else if (!s.handshake_done()) {
        CHECK(s.write(as_bytes("x"), out).code() == errc::invalid_argument);
    }
    (void)s.close_notify(out);
    return 0;
}
