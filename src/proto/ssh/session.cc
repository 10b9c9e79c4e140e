#include "proto/ssh/session.hh"

namespace ferry::ssh {

const char* to_string(session_event_type t) noexcept {
    switch (t) {
    case session_event_type::need_more: return "need_more";
    case session_event_type::authenticated: return "authenticated";
    case session_event_type::banner: return "banner";
    case session_event_type::channel: return "channel";
    case session_event_type::rekey_done: return "rekey_done";
    case session_event_type::disconnected: return "disconnected";
    }
    return "?";
}

session::session(session_config cfg)
    : t_(std::move(cfg.transport)), conn_(t_, std::move(cfg.connection)) {
    if (t_.self() == role::server) {
        auth_server_.emplace(t_, std::move(cfg.auth_server));
    } else {
        auth_client_.emplace(t_, std::move(cfg.auth_client));
    }
}

const std::string& session::user() const noexcept {
    return auth_server_ ? auth_server_->user() : empty_;
}

status session::start(buffer_chain& out, millis now) { return t_.start(out, now); }

millis session::next_deadline() const noexcept {
    millis a = auth_server_ ? auth_server_->next_deadline() : 0;
    millis b = t_.rekey_deadline();
    if (a == 0) return b;
    if (b == 0) return a;
    return std::min(a, b);
}

result<session_event> session::tick(buffer_chain& out, millis now) {
    auto r = tick_inner(out, now);
    if (!r && !t_.closed()) t_.disconnect(disconnect_reason::by_application, "internal error", out);
    return r;
}

result<session_event> session::tick_inner(buffer_chain& out, millis now) {
    session_event ev;
    if (auth_server_ && !authenticated_) {
        FERRY_TRY(a, auth_server_->tick(out, now));
        if (a->type == auth_event_type::authenticated) {
            authenticated_ = true;
            ev.type = session_event_type::authenticated;
            ev.user = a->user;
            ev.method = a->method;
        }
    }
    if (t_.established()) {
        FERRY_TRY(s, t_.tick(out, now));
    }
    return ev;
}

result<std::optional<session_event>> session::on_message(mut_bytes payload, buffer_chain& out,
                                                         millis now) {
    session_event ev;
    if (authenticated_) {
        FERRY_TRY(c, conn_.handle(payload, out));
        if (c->type == conn_event_type::none) return std::optional<session_event>{};
        ev.type = session_event_type::channel;
        ev.conn = *c;
        return std::optional<session_event>{ev};
    }
    if (auth_server_) {
        FERRY_TRY(a, auth_server_->handle(payload, out, now));
        if (a->type != auth_event_type::authenticated) return std::optional<session_event>{};
        authenticated_ = true;
        ev.type = session_event_type::authenticated;
        ev.user = a->user;
        ev.method = a->method;
        return std::optional<session_event>{ev};
    }
    FERRY_TRY(a, auth_client_->handle(payload, out));
    switch (a->type) {
    case auth_event_type::authenticated:
        authenticated_ = true;
        ev.type = session_event_type::authenticated;
        ev.user = a->user;
        ev.method = a->method;
        return std::optional<session_event>{ev};
    case auth_event_type::banner:
        ev.type = session_event_type::banner;
        ev.text = a->text;
        return std::optional<session_event>{ev};
    case auth_event_type::failed:
        // auth_client already sent DISCONNECT (no more methods).
        return fail(errc::ssh_auth, "authentication failed: no method left");
    case auth_event_type::none: break;
    }
    return std::optional<session_event>{};
}

result<session_event> session::feed(mut_bytes& in, buffer_chain& out, millis now) {
    // Every layer ends the session itself when it fails; this is the safety net for one that
    // forgot: an error never leaves the transport open.
    auto r = feed_inner(in, out, now);
    if (!r && !t_.closed()) t_.disconnect(disconnect_reason::by_application, "internal error", out);
    return r;
}

result<session_event> session::feed_inner(mut_bytes& in, buffer_chain& out, millis now) {
    for (;;) {
        FERRY_TRY(ev, t_.feed(in, out, now));
        switch (ev->type) {
        case event_type::need_more: return session_event{};
        case event_type::handshake_done:
            if (auth_client_) {
                FERRY_TRY(s, auth_client_->start(out));
            }
            continue;
        case event_type::rekey_done: {
            session_event e;
            e.type = session_event_type::rekey_done;
            return e;
        }
        case event_type::message: {
            FERRY_TRY(r, on_message(ev->payload, out, now));
            if (*r) return **r;
            continue;
        }
        case event_type::disconnected: {
            session_event e;
            e.type = session_event_type::disconnected;
            e.reason = ev->reason;
            e.text = ev->text;
            return e;
        }
        case event_type::ext_info:
        case event_type::debug:
        case event_type::unimplemented: continue;
        }
    }
}

}  // namespace ferry::ssh
