#include "proto/ssh/transport.hh"

#include <algorithm>
#include <cstring>

namespace ferry::ssh {

const char* to_string(event_type t) noexcept {
    switch (t) {
    case event_type::need_more: return "need_more";
    case event_type::handshake_done: return "handshake_done";
    case event_type::rekey_done: return "rekey_done";
    case event_type::message: return "message";
    case event_type::ext_info: return "ext_info";
    case event_type::debug: return "debug";
    case event_type::unimplemented: return "unimplemented";
    case event_type::disconnected: return "disconnected";
    }
    return "unknown";
}

namespace {

disconnect_reason reason_for(errc c) noexcept {
    switch (c) {
    case errc::ssh_mac: return disconnect_reason::mac_error;
    case errc::ssh_kex:
    case errc::crypto: return disconnect_reason::key_exchange_failed;
    case errc::ssh_host_key: return disconnect_reason::host_key_not_verifiable;
    case errc::ssh_version: return disconnect_reason::protocol_version_not_supported;
    default: return disconnect_reason::protocol_error;
    }
}

bool valid_algorithm_list(std::string_view list, bool (*known)(std::string_view)) {
    if (list.empty() || !valid_name_list(list)) return false;
    name_iter it(list);
    for (std::string_view n = it.next(); !n.empty(); n = it.next()) {
        if (!known(n)) return false;
    }
    return true;
}

bool known_kex(std::string_view n) {
    return n == name(kex_id::curve25519_sha256) || n == name(kex_id::curve25519_sha256_libssh);
}
bool known_cipher(std::string_view n) { return cipher_by_name(n).has_value(); }
bool known_mac(std::string_view n) { return mac_by_name(n).has_value(); }

}  // namespace

transport::transport(transport_config cfg)
    : cfg_(std::move(cfg)),
      version_(cfg_.self, cfg_.limits.version),
      pkt_(cfg_.limits.packet, *cfg_.random) {}

transport::~transport() {
    wipe(kex_.eph_priv);
}

status transport::start(buffer_chain& out, millis now) {
    if (started_) return fail(errc::invalid_argument, "transport already started");
    if (!cfg_.random) return fail(errc::invalid_argument, "no rng");
    if (cfg_.self == role::server && !cfg_.host_key) {
        return fail(errc::invalid_argument, "server needs a host key");
    }
    if (cfg_.self == role::client && !cfg_.verifier) {
        return fail(errc::invalid_argument, "client needs a host key verifier");
    }
    if (!valid_version_string(cfg_.version)) return fail(errc::invalid_argument, "version string");
    if (!valid_algorithm_list(cfg_.kex, known_kex) ||
        !valid_algorithm_list(cfg_.ciphers, known_cipher) ||
        !valid_algorithm_list(cfg_.macs, known_mac) ||
        (!cfg_.server_sig_algs.empty() && !valid_name_list(cfg_.server_sig_algs))) {
        return fail(errc::invalid_argument, "algorithm list");
    }
    if (cfg_.limits.packet.max_packet < 35000 || cfg_.limits.packet.max_packet > (1u << 24)) {
        return fail(errc::invalid_argument, "max_packet out of range [35000, 16 MiB]");
    }
    started_ = true;
    last_kex_ = now;
    out.append_copy(cfg_.version);
    out.append_copy(std::string_view("\r\n"));
    kex_.active = true;
    if (auto s = send_kexinit(out); !s) return fatal(s.err(), out);
    return {};
}

// ---- output ----------------------------------------------------------------------------------

status transport::write_now(bytes head, bytes body, buffer_chain& out) {
    return pkt_.write(head, body, out);
}

status transport::send(bytes head, bytes body, buffer_chain& out) {
    if (closed_) return fail(errc::closed, "session closed");
    if (!first_kex_done_) return fail(errc::invalid_argument, "handshake not done");
    if (head.empty()) return fail(errc::invalid_argument, "empty payload");
    auto m = std::to_integer<std::uint8_t>(head[0]);
    if (m != msg::service_request && m != msg::service_accept && m < msg::userauth_first) {
        return fail(errc::invalid_argument, "transport message numbers are not for send()");
    }
    if (head.size() + body.size() > pkt_.max_payload()) {
        return fail(errc::limit_exceeded, "payload over max packet");
    }
    if (kex_.active && !kex_.sent_newkeys) {
        if (queue_bytes_ + head.size() + body.size() > cfg_.limits.max_kex_queue_bytes) {
            return fail(errc::limit_exceeded, "rekey queue full");
        }
        std::vector<std::byte> q(head.begin(), head.end());
        q.insert(q.end(), body.begin(), body.end());
        queue_bytes_ += q.size();
        queue_.push_back(std::move(q));
        return {};
    }
    if (auto s = write_now(head, body, out); !s) return s;
    if (auto_rekey_ && !kex_.active && rekey_due(last_kex_)) return begin_kex(out);
    return {};
}

status transport::send_ignore(bytes data, buffer_chain& out) {
    if (closed_) return fail(errc::closed, "session closed");
    if (!first_kex_done_ || kex_.active) {
        // Never inside a key exchange: a strict-KEX peer would treat it as a violation.
        return fail(errc::invalid_argument, "not while a key exchange runs");
    }
    std::byte h[5] = {std::byte{msg::ignore}};
    store_be32(h + 1, static_cast<std::uint32_t>(data.size()));
    return write_now(h, data, out);
}

status transport::send_debug(std::string_view text, bool always_display, buffer_chain& out) {
    if (closed_) return fail(errc::closed, "session closed");
    if (!first_kex_done_ || kex_.active) {
        return fail(errc::invalid_argument, "not while a key exchange runs");
    }
    scratch_.clear();
    writer(scratch_).u8(msg::debug).boolean(always_display).string(text).string("");
    return write_now(scratch_, {}, out);
}

status transport::send_unimplemented(std::uint32_t seq, buffer_chain& out) {
    if (closed_) return fail(errc::closed, "session closed");
    std::byte p[5] = {std::byte{msg::unimplemented}};
    store_be32(p + 1, seq);
    return write_now(p, {}, out);
}

void transport::disconnect(disconnect_reason r, std::string_view description, buffer_chain& out) {
    if (closed_) return;
    closed_ = true;
    close_reason_ = r;
    if (!started_) return;
    scratch_.clear();
    writer(scratch_)
        .u8(msg::disconnect)
        .u32(static_cast<std::uint32_t>(r))
        .string(description.substr(0, 256))
        .string("");
    (void)write_now(scratch_, {}, out);
}

failure transport::fatal(const error& e, buffer_chain& out) {
    disconnect(reason_for(e.code), e.detail, out);
    return fail(e);
}

// ---- key exchange ----------------------------------------------------------------------------

status transport::send_kexinit(buffer_chain& out) {
    kexinit k;
    FERRY_TRY(r, cfg_.random->fill(k.cookie));
    k.kex = cfg_.kex;
    if (kex_count_ == 0) {
        // Feature markers belong to the first exchange only (strict KEX is decided there).
        if (cfg_.self == role::client) k.kex += ",ext-info-c";
        if (cfg_.strict_kex) {
            k.kex += ',';
            k.kex += cfg_.self == role::client ? kex_strict_client : kex_strict_server;
        }
    }
    k.host_key = std::string(ssh_ed25519);
    k.enc_c2s = k.enc_s2c = cfg_.ciphers;
    k.mac_c2s = k.mac_s2c = cfg_.macs;
    k.comp_c2s = k.comp_s2c = "none";
    kex_.ours = encode_kexinit(k);
    kex_.sent_kexinit = true;
    return write_now(kex_.ours, {}, out);
}

status transport::begin_kex(buffer_chain& out) {
    if (kex_.active) return {};
    kex_ = kex_state{};
    kex_.active = true;
    return send_kexinit(out);
}

status transport::rekey(buffer_chain& out, millis) {
    if (closed_) return fail(errc::closed, "session closed");
    if (!first_kex_done_) return fail(errc::invalid_argument, "handshake not done");
    return begin_kex(out);
}

bool transport::rekey_due(millis now) const noexcept {
    const auto& l = cfg_.limits;
    return pkt_.sent_bytes() >= l.rekey_bytes || pkt_.received_bytes() >= l.rekey_bytes ||
           pkt_.sent_packets() >= l.rekey_packets || pkt_.received_packets() >= l.rekey_packets ||
           (now > last_kex_ && now - last_kex_ >= l.rekey_interval);
}

status transport::tick(buffer_chain& out, millis now) {
    if (closed_) return fail(errc::closed, "session closed");
    if (auto_rekey_ && first_kex_done_ && !kex_.active && rekey_due(now)) {
        if (auto s = begin_kex(out); !s) return fatal(s.err(), out);
    }
    return {};
}

result<std::optional<event>> transport::on_kexinit(bytes payload, std::uint32_t seq,
                                                   buffer_chain& out) {
    if (kex_.got_kexinit) return fail(errc::ssh_protocol, "second KEXINIT in one key exchange");
    FERRY_TRY(k, parse_kexinit(payload));
    if (!kex_.active) {
        // The peer starts a re-exchange: answer with ours at once.
        FERRY_TRY(s, begin_kex(out));
    }
    kex_.got_kexinit = true;
    kex_.theirs.assign(payload.begin(), payload.end());
    FERRY_TRY(ours, parse_kexinit(kex_.ours));
    const kexinit& c = cfg_.self == role::client ? *ours : *k;
    const kexinit& s = cfg_.self == role::client ? *k : *ours;
    FERRY_TRY(a, negotiate(c, s, cfg_.self));
    if (kex_count_ == 0) {
        strict_ = a->strict;
        if (strict_ && seq != 0) {
            return fail(errc::ssh_protocol, "strict KEX: KEXINIT was not the first packet");
        }
        if (cfg_.require_strict_kex && !strict_) {
            return fail(errc::ssh_kex, "peer does not support strict KEX");
        }
    }
    kex_algs_ = *a;
    kex_.skip_next = a->guess_wrong;
    if (cfg_.self == role::client) {
        FERRY_TRY(e, client_send_ecdh_init(out));
    }
    return std::optional<event>();
}

status transport::client_send_ecdh_init(buffer_chain& out) {
    FERRY_TRY(r, cfg_.random->fill(kex_.eph_priv));
    FERRY_TRY(p, x25519_public(kex_.eph_priv, kex_.eph_pub));
    std::byte m[1 + 4 + 32];
    m[0] = std::byte{msg::kex_ecdh_init};
    store_be32(m + 1, 32);
    std::memcpy(m + 5, kex_.eph_pub.data(), 32);
    return write_now(m, {}, out);
}

status transport::on_ecdh_init(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    FERRY_TRY(qc, r.string());
    FERRY_TRY(end, r.expect_end());
    if (qc->size() != 32) return fail(errc::ssh_kex, "client ephemeral key is not 32 bytes");
    x25519_key peer{};
    std::memcpy(peer.data(), qc->data(), 32);
    FERRY_TRY(rf, cfg_.random->fill(kex_.eph_priv));
    FERRY_TRY(pub, x25519_public(kex_.eph_priv, kex_.eph_pub));
    x25519_key shared{};
    auto sh = x25519_shared(kex_.eph_priv, peer, shared);
    wipe(kex_.eph_priv);
    if (!sh) return fail(errc::ssh_kex, "x25519 failed (low-order client key?)");
    auto ks = ed25519_key_blob(cfg_.host_key->public_key());
    auto h = exchange_hash(peer_version(), cfg_.version, kex_.theirs, kex_.ours, ks, *qc,
                           kex_.eph_pub, shared);
    if (session_id_.empty()) session_id_.assign(h.begin(), h.end());
    ed25519_signature sig{};
    if (auto s = cfg_.host_key->sign(h, sig); !s) {
        wipe(shared);
        return s;
    }
    auto sig_blob = ed25519_signature_blob(sig);
    scratch_.clear();
    writer(scratch_)
        .u8(msg::kex_ecdh_reply)
        .string(bytes(ks))
        .string(bytes(kex_.eph_pub))
        .string(bytes(sig_blob));
    auto w = write_now(scratch_, {}, out);
    if (w) w = install_keys(h, shared, out);
    wipe(shared);
    return w;
}

status transport::on_ecdh_reply(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    FERRY_TRY(ks, r.string());
    FERRY_TRY(qs, r.string());
    FERRY_TRY(sig, r.string());
    FERRY_TRY(end, r.expect_end());
    if (qs->size() != 32) return fail(errc::ssh_kex, "server ephemeral key is not 32 bytes");
    FERRY_TRY(pub, parse_ed25519_key_blob(*ks));
    if (kex_count_ == 0) {
        if (!cfg_.verifier->accept(ssh_ed25519, *ks)) {
            return fail(errc::ssh_host_key, "host key rejected");
        }
        peer_host_key_.assign(ks->begin(), ks->end());
    } else if (!std::equal(ks->begin(), ks->end(), peer_host_key_.begin(), peer_host_key_.end())) {
        // The verifier approved one key for this session; a re-exchange may not swap it.
        return fail(errc::ssh_host_key, "host key changed during rekey");
    }
    x25519_key peer{};
    std::memcpy(peer.data(), qs->data(), 32);
    x25519_key shared{};
    auto sh = x25519_shared(kex_.eph_priv, peer, shared);
    wipe(kex_.eph_priv);
    if (!sh) return fail(errc::ssh_kex, "x25519 failed (low-order server key?)");
    auto h = exchange_hash(cfg_.version, peer_version(), kex_.ours, kex_.theirs, *ks,
                           kex_.eph_pub, *qs, shared);
    if (auto v = verify_ed25519_signature_blob(*ks, *sig, h); !v) {
        wipe(shared);
        return v;
    }
    if (session_id_.empty()) session_id_.assign(h.begin(), h.end());
    auto s = install_keys(h, shared, out);
    wipe(shared);
    return s;
}

status transport::install_keys(const std::array<std::byte, 32>& h, bytes shared,
                               buffer_chain& out) {
    session_keys keys = derive_session_keys(kex_algs_, shared, h, session_id_);
    const int tx = cfg_.self == role::client ? 0 : 1;
    const int rx = 1 - tx;
    FERRY_TRY(tc, make_cipher(kex_algs_.enc[tx], kex_algs_.mac[tx], keys.key[tx], keys.iv[tx],
                              keys.mac[tx]));
    FERRY_TRY(rc, make_cipher(kex_algs_.enc[rx], kex_algs_.mac[rx], keys.key[rx], keys.iv[rx],
                              keys.mac[rx]));
    kex_.next_rx = std::move(*rc);
    kex_.ecdh_done = true;
    std::byte nk[1] = {std::byte{msg::newkeys}};
    FERRY_TRY(w, write_now(nk, {}, out));
    pkt_.set_send_cipher(std::move(*tc));
    if (strict_) pkt_.reset_send_seq();
    kex_.sent_newkeys = true;
    if (cfg_.self == role::server && kex_count_ == 0 && kex_algs_.client_ext_info &&
        !cfg_.server_sig_algs.empty()) {
        // RFC 8308 §2.4: the first packet after the server's first NEWKEYS.
        scratch_.clear();
        writer(scratch_)
            .u8(msg::ext_info)
            .u32(1)
            .string("server-sig-algs")
            .string(cfg_.server_sig_algs);
        FERRY_TRY(e, write_now(scratch_, {}, out));
    }
    return flush_queue(out);
}

status transport::flush_queue(buffer_chain& out) {
    while (!queue_.empty()) {
        FERRY_TRY(w, write_now(queue_.front(), {}, out));
        queue_bytes_ -= queue_.front().size();
        queue_.pop_front();
    }
    return {};
}

result<std::optional<event>> transport::on_newkeys(millis now) {
    pkt_.set_recv_cipher(std::move(kex_.next_rx));
    if (strict_) pkt_.reset_recv_seq();
    algs_ = kex_algs_;
    kex_ = kex_state{};
    ++kex_count_;
    last_kex_ = now;
    event e;
    e.type = first_kex_done_ ? event_type::rekey_done : event_type::handshake_done;
    first_kex_done_ = true;
    return std::optional<event>(e);
}

status transport::on_ext_info(bytes payload) {
    reader r(payload.subspan(1));
    FERRY_TRY(n, r.u32());
    for (std::uint32_t i = 0; i < *n; ++i) {
        FERRY_TRY(k, r.text());
        FERRY_TRY(v, r.text());
        if (*k == "server-sig-algs") {
            if (!valid_name_list(*v)) return fail(errc::ssh_protocol, "bad server-sig-algs");
            peer_sig_algs_.assign(*v);
        }
    }
    return r.expect_end();
}

// ---- input -----------------------------------------------------------------------------------

result<std::optional<event>> transport::dispatch(inbound_packet p, buffer_chain& out, millis now) {
    const auto m = std::to_integer<std::uint8_t>(p.payload[0]);
    bytes payload = p.payload;

    // RFC 4253 §7.1: a wrongly guessed kex packet from the peer is ignored.
    if (kex_.skip_next && m >= 30 && m <= 49) {
        kex_.skip_next = false;
        return std::optional<event>();
    }

    switch (m) {
    case msg::disconnect: {
        reader r(payload.subspan(1));
        FERRY_TRY(reason, r.u32());
        FERRY_TRY(desc, r.text());
        closed_ = true;
        event e;
        e.type = event_type::disconnected;
        e.reason = static_cast<disconnect_reason>(*reason);
        e.text = *desc;
        return std::optional<event>(e);
    }
    case msg::kexinit:
        return on_kexinit(payload, p.seq, out);
    case msg::newkeys:
        if (!kex_.active || !kex_.next_rx) return fail(errc::ssh_protocol, "unexpected NEWKEYS");
        if (payload.size() != 1) return fail(errc::ssh_protocol, "NEWKEYS with a body");
        return on_newkeys(now);
    case msg::kex_ecdh_init: {
        if (cfg_.self != role::server || !kex_.got_kexinit || kex_.ecdh_done) {
            return fail(errc::ssh_protocol, "unexpected KEX_ECDH_INIT");
        }
        FERRY_TRY(a, on_ecdh_init(payload, out));
        return std::optional<event>();
    }
    case msg::kex_ecdh_reply: {
        if (cfg_.self != role::client || !kex_.got_kexinit || kex_.ecdh_done) {
            return fail(errc::ssh_protocol, "unexpected KEX_ECDH_REPLY");
        }
        FERRY_TRY(b, on_ecdh_reply(payload, out));
        return std::optional<event>();
    }
    default:
        break;
    }

    // Everything else. Strict KEX: nothing but the exchange itself during the initial one.
    if (!first_kex_done_ && strict_) {
        return fail(errc::ssh_protocol, "strict KEX: unexpected message during initial key exchange");
    }
    switch (m) {
    case msg::ignore:
        return std::optional<event>();
    case msg::debug: {
        reader r(payload.subspan(1));
        FERRY_TRY(always, r.boolean());
        FERRY_TRY(text, r.text());
        event e;
        e.type = event_type::debug;
        e.always_display = *always;
        e.text = *text;
        return std::optional<event>(e);
    }
    case msg::unimplemented: {
        reader r(payload.subspan(1));
        FERRY_TRY(seq, r.u32());
        event e;
        e.type = event_type::unimplemented;
        e.seq = *seq;
        return std::optional<event>(e);
    }
    case msg::ext_info:
        if (!first_kex_done_) return fail(errc::ssh_protocol, "EXT_INFO before NEWKEYS");
        if (cfg_.self == role::server) return std::optional<event>();  // we sent no ext-info-s
        {
            FERRY_TRY(x, on_ext_info(payload));
            event e;
            e.type = event_type::ext_info;
            return std::optional<event>(e);
        }
    default:
        break;
    }
    if (m == msg::service_request || m == msg::service_accept || m >= msg::userauth_first) {
        if (!first_kex_done_) return fail(errc::ssh_protocol, "message before key exchange");
        if (kex_.got_kexinit) {
            // RFC 4253 §7.1: after its KEXINIT the peer sends only transport messages until its
            // NEWKEYS.
            return fail(errc::ssh_protocol, "upper-layer message during key exchange");
        }
        event e;
        e.type = event_type::message;
        e.payload = p.payload;
        e.seq = p.seq;
        return std::optional<event>(e);
    }
    // RFC 4253 §11.4: unrecognised messages get UNIMPLEMENTED.
    FERRY_TRY(u, send_unimplemented(p.seq, out));
    return std::optional<event>();
}

result<event> transport::feed(mut_bytes& in, buffer_chain& out, millis now) {
    if (closed_) return fail(errc::closed, "session closed");
    if (!started_) return fail(errc::invalid_argument, "start() first");
    if (!version_.done()) {
        bytes b = in;
        auto v = version_.feed(b);
        in = in.subspan(in.size() - b.size());
        if (!v) return fatal(v.err(), out);
        if (!*v) return event{};
    }
    for (;;) {
        auto p = pkt_.read(in);
        if (!p) return fatal(p.err(), out);
        if (!*p) return event{};
        auto ev = dispatch(**p, out, now);
        if (!ev) return fatal(ev.err(), out);
        if (auto_rekey_ && first_kex_done_ && !kex_.active && !closed_ && rekey_due(now)) {
            if (auto s = begin_kex(out); !s) return fatal(s.err(), out);
        }
        if (*ev) return **ev;
    }
}

}  // namespace ferry::ssh
