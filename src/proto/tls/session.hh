#pragma once
// One TLS connection, sans-IO: ciphertext in, events out; ciphertext out appended to a
// buffer_chain the caller owns. No fds, no clock reads of ours (wolfSSL reads the wall clock
// itself for certificate dates and ticket ages). wolfSSL runs on memory IO callbacks.
//
//   tls::session s = *tls::session::server(ctx);
//   bytes in = received;                      // any chunking, down to 1 byte
//   for (;;) {
//       auto ev = s.next(in, out);            // `in` advances; handshake/alerts go to `out`
//       if (!ev) { send(out); close(); break; }   // an alert for the peer may be in `out`
//       if (ev->type == tls::event_type::need_more) break;   // `in` is used up
//       if (ev->type == tls::event_type::data) deliver(std::move(ev->data));
//   }
//   s.write(plaintext, out);                  // records appended to `out`
//
// Buffers: ciphertext is copied into wolfSSL's record buffer by the IO callback (the caller's
// receive buffer is free again at once), decrypted there, and copied once into a block the
// session owns; each `data` event is a `slice` of that block, so callers may keep or link it
// without another copy. Encryption copies the plaintext into wolfSSL's record buffer and the
// sealed record once into `out` (small writes are gathered into full 16 KiB records first).
//
// Thread: one thread at a time (any; on the relay, the shard that owns the connection).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/tls/context.hh"

namespace ferry::tls {

enum class role : std::uint8_t { client, server };

enum class event_type : std::uint8_t {
    need_more,       // all input consumed; nothing more until more ciphertext arrives
    handshake_done,  // once; write() may be used from now on
    data,            // `data` holds plaintext
    peer_closed,     // the peer's close_notify: it sends nothing more (its half-close)
};

struct event {
    event_type type = event_type::need_more;
    slice data;
};

struct limits {
    // Decrypted records land in blocks of this size (each record whole, so a block holds
    // `plaintext_block / 16 KiB` full records). [16640, 1 MiB]; 32 KiB by default.
    std::uint32_t plaintext_block = 32 * 1024;
};

// A client's resumable session (from a ticket the server sent). Immutable; may be shared by
// threads and used for several later connections to the same server.
class resumption;

class session {
public:
    // Errors: errc::out_of_memory, errc::invalid_argument (bad limits or server name).
    static result<session> server(std::shared_ptr<const server_context> ctx, const limits& lim = {});
    // `server_name`: SNI (DNS names only: never an IP literal, RFC 6066) and the name the
    // certificate must carry (DNS or IP SAN), unless the context skips verification.
    static result<session> client(std::shared_ptr<const client_context> ctx, std::string_view server_name,
                                  std::shared_ptr<const resumption> resume = {}, const limits& lim = {});
    session(session&&) noexcept;
    session& operator=(session&&) noexcept;
    ~session();

    // Client: appends the ClientHello to `out`. Server: nothing. Idempotent.
    status start(buffer_chain& out) noexcept;
    // Decodes from `in` (advancing it) up to the next event; bytes for the peer (handshake
    // flights, tickets, alerts) are appended to `out`. After an error every call returns it
    // again: errc::tls_handshake, tls_verify (detail names the certificate check that failed)
    // or tls_protocol.
    result<event> next(bytes& in, buffer_chain& out) noexcept;
    // Seals `plain` into records appended to `out`. Precondition: handshake_done(), no
    // close_notify sent (else errc::closed / errc::invalid_argument).
    status write(bytes plain, buffer_chain& out) noexcept;
    // Same for a chain, which is consumed; fragments are gathered into full records.
    status write(buffer_chain& plain, buffer_chain& out) noexcept;
    // Appends our close_notify (once; nothing before the handshake finished or after a failure).
    status close_notify(buffer_chain& out) noexcept;

    role side() const noexcept;
    bool handshake_done() const noexcept;
    bool peer_closed() const noexcept;
    bool failed() const noexcept;
    // The server saw a plaintext HTTP request instead of a ClientHello (a client that should
    // have used https://); the caller may answer it in plain HTTP before closing.
    bool plaintext_http() const noexcept;
    // After the handshake: the ALPN protocol (empty: none), the server name (server: the SNI
    // the client sent; client: the one it asked for), version, suite, resumed or not.
    std::string_view alpn() const noexcept;
    std::string_view server_name() const noexcept;
    std::string_view version_name() const noexcept;  // "TLSv1.3"
    std::string_view cipher_name() const noexcept;   // "TLS13-AES256-GCM-SHA384"
    std::string_view group_name() const noexcept;    // key exchange: "X25519", "SECP256R1"
    bool resumed() const noexcept;
    // Client: the session to resume later (once the server sent a ticket), else empty.
    std::shared_ptr<const resumption> resumption_ticket() const;

    struct impl;

private:
    explicit session(std::unique_ptr<impl> p) noexcept;
    std::unique_ptr<impl> p_;
};

}  // namespace ferry::tls
