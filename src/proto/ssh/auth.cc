#include "proto/ssh/auth.hh"

#include "proto/ssh/hostkey.hh"
#include "proto/ssh/wire.hh"

namespace ferry::ssh {

namespace {
constexpr std::string_view kUserauth = "ssh-userauth";
constexpr std::string_view kConnection = "ssh-connection";
}  // namespace

// ---- server ----------------------------------------------------------------------------------

auth_server::auth_server(transport& t, auth_server_config cfg) : t_(t), cfg_(std::move(cfg)) {}

failure auth_server::fatal(disconnect_reason r, errc c, const char* why, buffer_chain& out) {
    t_.disconnect(r, why, out);
    return fail(c, why);
}

result<auth_event> auth_server::send_now(const std::vector<std::byte>& payload,
                                         buffer_chain& out) {
    FERRY_TRY(s, t_.send(payload, out));
    if (std::to_integer<std::uint8_t>(payload[0]) != msg::userauth_success) return auth_event{};
    // Only now may the transport rekey by itself: OpenSSH refuses KEXINIT before SUCCESS.
    success_sent_ = true;
    t_.allow_automatic_rekey();
    auth_event e;
    e.type = auth_event_type::authenticated;
    e.user = user_;
    e.method = method_;
    return e;
}

result<auth_event> auth_server::respond(std::vector<std::byte> payload, millis due,
                                        buffer_chain& out, millis now) {
    // Answers leave in request order: one held back delays those behind it.
    if (!pending_.empty() && pending_.back().due > due) due = pending_.back().due;
    if (pending_.empty() && due <= now) return send_now(payload, out);
    pending_.push_back({due, std::move(payload)});
    return auth_event{};
}

result<auth_event> auth_server::tick(buffer_chain& out, millis now) {
    auth_event ev;
    while (!pending_.empty() && pending_.front().due <= now) {
        FERRY_TRY(e, send_now(pending_.front().payload, out));
        pending_.pop_front();
        if (e->type != auth_event_type::none) ev = *e;
    }
    return ev;
}

status auth_server::send_failure(bool counted, buffer_chain& out, millis now) {
    std::vector<std::byte> p;
    writer(p).u8(msg::userauth_failure).string(cfg_.methods).boolean(false);
    millis due = now;
    if (counted) {
        if (++failures_ >= cfg_.limits.max_failures) {
            return fatal(disconnect_reason::no_more_auth_methods_available, errc::ssh_auth,
                         "too many authentication failures", out);
        }
        due = now + cfg_.limits.failure_delay;
    }
    FERRY_TRY(r, respond(std::move(p), due, out, now));
    return {};
}

result<auth_event> auth_server::handle(bytes payload, buffer_chain& out, millis now) {
    if (!cfg_.policy) return fail(errc::invalid_argument, "auth_server needs a policy");
    if (payload.empty()) return fail(errc::invalid_argument, "empty payload");
    FERRY_TRY(t, tick(out, now));
    if (t->type != auth_event_type::none) {
        // A held-back SUCCESS just left; this payload came after it and is the connection
        // layer's, or a late request that RFC 4252 §5.1 says to ignore.
        return *t;
    }
    const auto m = std::to_integer<std::uint8_t>(payload[0]);
    if (done_) return auth_event{};
    if (!service_ok_) {
        if (m != msg::service_request) {
            return fatal(disconnect_reason::protocol_error, errc::ssh_protocol,
                         "expected SERVICE_REQUEST", out);
        }
        reader r(payload.subspan(1));
        auto name = r.text();
        if (!name || !r.expect_end()) {
            return fatal(disconnect_reason::protocol_error, errc::malformed,
                         "bad SERVICE_REQUEST", out);
        }
        if (*name != kUserauth) {
            return fatal(disconnect_reason::service_not_available, errc::ssh_auth,
                         "service not available", out);
        }
        service_ok_ = true;
        std::vector<std::byte> p;
        writer(p).u8(msg::service_accept).string(kUserauth);
        FERRY_TRY(s, t_.send(p, out));
        if (!cfg_.banner.empty()) {
            p.clear();
            writer(p).u8(msg::userauth_banner).string(cfg_.banner).string("");
            FERRY_TRY(b, t_.send(p, out));
        }
        return auth_event{};
    }
    if (m != msg::userauth_request) {
        return fatal(disconnect_reason::protocol_error, errc::ssh_protocol,
                     "unexpected message during authentication", out);
    }
    return on_request(payload, out, now);
}

result<auth_event> auth_server::on_request(bytes payload, buffer_chain& out, millis now) {
    reader r(payload.subspan(1));
    auto user = r.text();
    auto service = r.text();
    auto method = r.text();
    if (!user || !service || !method) {
        return fatal(disconnect_reason::protocol_error, errc::malformed, "bad USERAUTH_REQUEST",
                     out);
    }
    if (user->size() > cfg_.limits.max_user) {
        return fatal(disconnect_reason::illegal_user_name, errc::ssh_auth, "user name too long",
                     out);
    }
    if (*service != kConnection) {
        return fatal(disconnect_reason::service_not_available, errc::ssh_auth,
                     "service not available", out);
    }
    // Like OpenSSH: one user name per connection.
    if (user_.empty()) {
        user_.assign(*user);
    } else if (*user != user_) {
        return fatal(disconnect_reason::protocol_error, errc::ssh_auth, "user name changed", out);
    }
    auto success = [&](std::string_view how) -> result<auth_event> {
        done_ = true;
        method_.assign(how);
        std::vector<std::byte> p = {std::byte{msg::userauth_success}};
        return respond(std::move(p), now, out, now);
    };
    auto failed = [&](bool counted) -> result<auth_event> {
        FERRY_TRY(s, send_failure(counted, out, now));
        return auth_event{};
    };

    if (*method == "none") {
        if (!r.empty()) return failed(false);
        if (cfg_.policy->allow_none(user_)) return success("none");
        return failed(false);  // the usual "which methods?" probe: not an attempt
    }
    if (*method == "password" && name_list_contains(cfg_.methods, "password")) {
        auto change = r.boolean();
        auto pw = r.text();
        if (!change || !pw || !r.expect_end()) {
            return fatal(disconnect_reason::protocol_error, errc::malformed, "bad password request",
                         out);
        }
        if (*change || pw->size() > cfg_.limits.max_password) return failed(true);
        if (cfg_.policy->check_password(user_, *pw)) return success("password");
        return failed(true);
    }
    if (*method == "publickey" && name_list_contains(cfg_.methods, "publickey")) {
        auto has_sig = r.boolean();
        auto alg_name = r.text();
        auto blob = r.string();
        if (!has_sig || !alg_name || !blob) {
            return fatal(disconnect_reason::protocol_error, errc::malformed,
                         "bad publickey request", out);
        }
        std::size_t signed_len = 1 + r.offset();  // the payload up to the signature
        auto alg = user_key_alg_by_name(*alg_name);
        if (!alg || !key_blob_matches(*alg, *blob)) return failed(false);
        if (!*has_sig) {
            if (!r.empty()) return failed(false);
            if (!cfg_.policy->check_publickey(user_, *alg, *blob)) return failed(false);
            std::vector<std::byte> p;
            writer(p).u8(msg::userauth_pk_ok).string(*alg_name).string(*blob);
            return respond(std::move(p), now, out, now);
        }
        auto sig = r.string();
        if (!sig || !r.expect_end()) {
            return fatal(disconnect_reason::protocol_error, errc::malformed,
                         "bad publickey request", out);
        }
        // RFC 4252 §7: string session_id || the request up to the key blob.
        std::vector<std::byte> data;
        writer(data).string(t_.session_id()).raw(payload.first(signed_len));
        if (!verify_user_signature(*alg, *blob, *sig, data)) return failed(true);
        if (cfg_.policy->check_publickey(user_, *alg, *blob)) return success("publickey");
        return failed(true);
    }
    return failed(false);  // unknown or disabled method
}

// ---- client ----------------------------------------------------------------------------------

auth_client::auth_client(transport& t, auth_client_config cfg) : t_(t), cfg_(std::move(cfg)) {}

failure auth_client::fatal(disconnect_reason r, errc c, const char* why, buffer_chain& out) {
    t_.disconnect(r, why, out);
    return fail(c, why);
}

status auth_client::start(buffer_chain& out) {
    if (started_) return fail(errc::invalid_argument, "auth already started");
    started_ = true;
    std::vector<std::byte> p;
    writer(p).u8(msg::service_request).string(kUserauth);
    return t_.send(p, out);
}

status auth_client::send_request(std::string_view method, buffer_chain& out) {
    method_.assign(method);
    std::vector<std::byte> p;
    writer w(p);
    w.u8(msg::userauth_request).string(cfg_.user).string(kConnection).string(method);
    if (method == "password") {
        w.boolean(false).string(cfg_.password);
    } else if (method == "publickey") {
        auto blob = ed25519_key_blob(cfg_.key->public_key());
        w.boolean(true).string(ssh_ed25519).string(bytes(blob));
        std::vector<std::byte> data;
        writer(data).string(t_.session_id()).raw(p);
        ed25519_signature sig{};
        FERRY_TRY(s, cfg_.key->sign(data, sig));
        auto sb = ed25519_signature_blob(sig);
        w.string(bytes(sb));
    }
    auto s = t_.send(p, out);
    wipe(mut_bytes(p));  // may hold the password
    return s;
}

status auth_client::next_method(buffer_chain& out, bool& none_left) {
    none_left = false;
    if (cfg_.key && !tried_publickey_ && name_list_contains(server_methods_, "publickey")) {
        tried_publickey_ = true;
        return send_request("publickey", out);
    }
    if (!cfg_.password.empty() && !tried_password_ &&
        name_list_contains(server_methods_, "password")) {
        tried_password_ = true;
        return send_request("password", out);
    }
    none_left = true;
    return {};
}

result<auth_event> auth_client::handle(bytes payload, buffer_chain& out) {
    if (payload.empty()) return fail(errc::invalid_argument, "empty payload");
    if (done_) return auth_event{};
    const auto m = std::to_integer<std::uint8_t>(payload[0]);
    reader r(payload.subspan(1));
    if (!service_ok_) {
        auto name = r.text();
        if (m != msg::service_accept || !name || *name != kUserauth) {
            return fatal(disconnect_reason::protocol_error, errc::ssh_protocol,
                         "expected SERVICE_ACCEPT ssh-userauth", out);
        }
        service_ok_ = true;
        FERRY_TRY(s, send_request("none", out));
        return auth_event{};
    }
    switch (m) {
    case msg::userauth_success:
        done_ = true;
        t_.allow_automatic_rekey();
        {
            auth_event e;
            e.type = auth_event_type::authenticated;
            e.user = cfg_.user;
            e.method = method_;
            return e;
        }
    case msg::userauth_banner: {
        auto text = r.text();
        if (!text) {
            return fatal(disconnect_reason::protocol_error, errc::malformed, "bad banner", out);
        }
        auth_event e;
        e.type = auth_event_type::banner;
        e.text = *text;
        return e;
    }
    case msg::userauth_failure: {
        auto methods = r.name_list();
        auto partial = r.boolean();
        if (!methods || !partial) {
            return fatal(disconnect_reason::protocol_error, errc::malformed,
                         "bad USERAUTH_FAILURE", out);
        }
        server_methods_.assign(*methods);
        bool none_left = false;
        FERRY_TRY(s, next_method(out, none_left));
        if (!none_left) return auth_event{};
        t_.disconnect(disconnect_reason::no_more_auth_methods_available,
                      "no authentication method left", out);
        auth_event e;
        e.type = auth_event_type::failed;
        return e;
    }
    default:
        return fatal(disconnect_reason::protocol_error, errc::ssh_protocol,
                     "unexpected message during authentication", out);
    }
}

}  // namespace ferry::ssh
