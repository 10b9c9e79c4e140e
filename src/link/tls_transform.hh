#pragma once
// TLS on the reactor: a reactor::stream_transform over a sans-IO tls::session. Installed on a
// connection before it is attached, it makes every handler (WebSocket, HTTP ingress, SSH
// sessions) speak TLS without knowing it: on_data gets plaintext, send()/output() take
// plaintext, and the reactor encrypts what a handler queued in one loop iteration together
// just before the send. Connections without it keep the plain path untouched (ring slices go
// to on_data as they are: zero copy).
//
//   listener:  engine.listen(addr, link::with_tls(ctx, factory))   // relay, ferry-echo
//   outbound:  c->set_transform(*link::tls_transform::client(ctx, "relay.example.com"));
//              shard.connect(addr, std::move(c));                    // agent
//
// A failed handshake closes the connection; the handler's on_close gets errc::tls_handshake /
// tls_verify with the reason. A client that sends plain HTTP to the TLS port gets a plain
// HTTP 400 saying so (not a TLS alert it could not read).
//
// Thread: the connection's shard (and it moves with the connection on a hand-over). Contexts
// are shared read-only by all shards (proto/tls/context.hh).
#include <memory>
#include <string_view>

#include "proto/tls/context.hh"
#include "proto/tls/session.hh"
#include "reactor/shard.hh"
#include "reactor/transform.hh"

namespace ferry::link {

struct tls_transform_options {
    tls::limits limits{};
    // Answer plain HTTP on the TLS port with "400, use https://" before closing.
    bool plain_http_reply = true;
};

class tls_transform final : public reactor::stream_transform {
public:
    static result<std::unique_ptr<tls_transform>> server(std::shared_ptr<const tls::server_context> ctx,
                                                         const tls_transform_options& o = {});
    static result<std::unique_ptr<tls_transform>> client(std::shared_ptr<const tls::client_context> ctx,
                                                         std::string_view server_name,
                                                         std::shared_ptr<const tls::resumption> resume = {},
                                                         const tls_transform_options& o = {});

    // ALPN, SNI, version, resumption ticket, ... (valid for the connection's life).
    const tls::session& session() const noexcept { return s_; }

    // reactor::stream_transform
    status start(buffer_chain& wire) noexcept override;
    status decode(slice in, buffer_chain& plain, buffer_chain& wire) noexcept override;
    bool ready() const noexcept override { return s_.handshake_done(); }
    status encode(buffer_chain& plain, buffer_chain& wire) noexcept override;
    bool peer_finished() const noexcept override { return s_.peer_closed(); }
    void finish(buffer_chain& wire) noexcept override;

private:
    tls_transform(tls::session s, const tls_transform_options& o) : s_(std::move(s)), opt_(o) {}
    tls::session s_;
    tls_transform_options opt_;
};

// The TLS session of a connection, or nullptr when it is plain TCP.
const tls::session* tls_of(const reactor::connection& c) noexcept;

// Wraps a listener's factory: every accepted connection gets a server-side TLS transform.
// A null `ctx` returns `make` unchanged (plain TCP, `--no-tls`).
reactor::connection_factory with_tls(std::shared_ptr<const tls::server_context> ctx, reactor::connection_factory make,
                                     const tls_transform_options& o = {});

}  // namespace ferry::link
