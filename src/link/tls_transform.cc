#include "link/tls_transform.hh"

#include "proto/base/log.hh"

namespace ferry::link {

namespace {
// What a browser or curl gets for http:// on a TLS port: readable, in the relay's error shape.
constexpr std::string_view plain_http_answer =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 101\r\n"
    "Connection: close\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"tls_required\",\"message\":\"this port speaks TLS: use https:// (or wss://) instead\"}}\n";
static_assert(plain_http_answer.size() - plain_http_answer.find("\r\n\r\n") - 4 == 101);
}  // namespace

result<std::unique_ptr<tls_transform>> tls_transform::server(std::shared_ptr<const tls::server_context> ctx,
                                                             const tls_transform_options& o) {
    FERRY_TRY(s, tls::session::server(std::move(ctx), o.limits));
    return std::unique_ptr<tls_transform>(new tls_transform(std::move(*s), o));
}

result<std::unique_ptr<tls_transform>> tls_transform::client(std::shared_ptr<const tls::client_context> ctx,
                                                             std::string_view server_name,
                                                             std::shared_ptr<const tls::resumption> resume,
                                                             const tls_transform_options& o) {
    FERRY_TRY(s, tls::session::client(std::move(ctx), server_name, std::move(resume), o.limits));
    return std::unique_ptr<tls_transform>(new tls_transform(std::move(*s), o));
}

status tls_transform::start(buffer_chain& wire) noexcept { return s_.start(wire); }

status tls_transform::decode(slice in, buffer_chain& plain, buffer_chain& wire) noexcept {
    bytes b = in.view();
    for (;;) {
        auto ev = s_.next(b, wire);
        if (!ev) {
            if (s_.plaintext_http() && opt_.plain_http_reply) wire.append_copy(plain_http_answer);
            FERRY_LOG(debug, "tls failed", {"code", to_string(ev.err().code)}, {"reason", ev.err().detail},
                      {"handshake_done", s_.handshake_done() ? 1 : 0});
            return fail(ev.err());
        }
        switch (ev->type) {
        case tls::event_type::need_more: return {};
        case tls::event_type::data: plain.append(std::move(ev->data)); break;
        case tls::event_type::handshake_done:
            FERRY_LOG(debug, "tls handshake done", {"version", s_.version_name()}, {"cipher", s_.cipher_name()},
                      {"alpn", s_.alpn()}, {"sni", s_.server_name()}, {"resumed", s_.resumed() ? 1 : 0});
            break;
        case tls::event_type::peer_closed: break;  // the connection sees peer_finished()
        }
    }
}

status tls_transform::encode(buffer_chain& plain, buffer_chain& wire) noexcept { return s_.write(plain, wire); }

void tls_transform::finish(buffer_chain& wire) noexcept { (void)s_.close_notify(wire); }

const tls::session* tls_of(const reactor::connection& c) noexcept {
    // Only this file's transform is a TLS one; anything else (a test's) is not ours to read.
    auto* t = dynamic_cast<const tls_transform*>(c.transform());
    return t ? &t->session() : nullptr;
}

reactor::connection_factory with_tls(std::shared_ptr<const tls::server_context> ctx, reactor::connection_factory make,
                                     const tls_transform_options& o) {
    if (!ctx) return make;
    return [ctx = std::move(ctx), make = std::move(make), o](reactor::shard& s) -> std::unique_ptr<reactor::connection> {
        std::unique_ptr<reactor::connection> c = make(s);
        if (!c) return c;
        auto t = tls_transform::server(ctx, o);
        if (!t) {
            FERRY_LOG(warn, "tls session setup failed: connection refused", {"reason", t.err().detail});
            return nullptr;
        }
        c->set_transform(std::move(*t));
        return c;
    };
}

}  // namespace ferry::link
