#include "proto/ssh/connection.hh"

#include <algorithm>
#include <array>
#include <limits>

#include "proto/ssh/wire.hh"

namespace ferry::ssh {

namespace {

constexpr std::string_view kTcpipForward = "tcpip-forward";
constexpr std::string_view kCancelTcpipForward = "cancel-tcpip-forward";
constexpr std::string_view kKeepalive = "keepalive@openssh.com";
constexpr std::string_view kNoMoreSessions = "no-more-sessions@openssh.com";

// Data message heads: byte, uint32 recipient, [uint32 code,] uint32 length.
constexpr std::size_t kDataHead = 9;
constexpr std::size_t kExtHead = 13;

// Channel requests that never need an answer and mean nothing to a relay.
bool silent_request(std::string_view type) {
    return type == "exit-status" || type == "exit-signal" || type == "eof@openssh.com";
}

}  // namespace

const char* to_string(conn_event_type t) noexcept {
    switch (t) {
    case conn_event_type::none: return "none";
    case conn_event_type::open_request: return "open_request";
    case conn_event_type::opened: return "opened";
    case conn_event_type::open_failed: return "open_failed";
    case conn_event_type::data: return "data";
    case conn_event_type::eof: return "eof";
    case conn_event_type::closed: return "closed";
    case conn_event_type::writable: return "writable";
    case conn_event_type::global_reply: return "global_reply";
    }
    return "?";
}

connection::connection(transport& t, connection_config cfg) : t_(t), cfg_(std::move(cfg)) {
    // A window of 0 or a packet size over the window would stall every channel.
    cfg_.limits.window = std::max<std::uint32_t>(cfg_.limits.window, 1024);
    cfg_.limits.max_packet = std::clamp<std::uint32_t>(cfg_.limits.max_packet, 1024,
                                                       cfg_.limits.window);
}

failure connection::protocol_error(const char* why, buffer_chain& out) {
    t_.disconnect(disconnect_reason::protocol_error, why, out);
    return fail(errc::ssh_channel, why);
}

status connection::send_small(bytes payload, buffer_chain& out) { return t_.send(payload, out); }

connection::channel* connection::ours(std::uint32_t id) noexcept {
    if (id >= channels_.size() || channels_[id].state == chan_state::free) return nullptr;
    return &channels_[id];
}

bool connection::is_open(std::uint32_t id) const noexcept {
    return id < channels_.size() && channels_[id].state == chan_state::open &&
           !channels_[id].sent_close;
}

std::uint32_t connection::send_window(std::uint32_t id) const noexcept {
    if (!is_open(id)) return 0;
    return channels_[id].peer_window;
}

result<connection::channel*> connection::peer_channel(std::uint32_t id, buffer_chain& out) {
    channel* c = ours(id);
    // An id the embedder has not answered yet (opening_in) is not the peer's to address.
    if (!c || c->state == chan_state::opening_in) return protocol_error("unknown channel", out);
    return c;
}

result<std::uint32_t> connection::allocate() {
    if (live_ >= cfg_.limits.max_channels) return fail(errc::limit_exceeded, "too many channels");
    std::uint32_t id;
    if (!free_.empty()) {
        id = free_.back();
        free_.pop_back();
    } else {
        id = static_cast<std::uint32_t>(channels_.size());
        channels_.emplace_back();
    }
    channels_[id] = channel{};
    channels_[id].local_window = cfg_.limits.window;
    ++live_;
    return id;
}

void connection::release(std::uint32_t id) noexcept {
    channels_[id] = channel{};
    free_.push_back(id);
    --live_;
}

// ---- inbound ----------------------------------------------------------------------------------

result<conn_event> connection::handle(mut_bytes payload, buffer_chain& out) {
    auto r = dispatch(payload, out);
    if (!r && !t_.closed()) {
        // A reply could not be queued (our rekey holds output back and a peer keeps asking):
        // end the session cleanly rather than leave it half-answered.
        t_.disconnect(disconnect_reason::by_application, "cannot queue reply", out);
    }
    return r;
}

result<conn_event> connection::dispatch(mut_bytes payload, buffer_chain& out) {
    if (payload.empty()) return protocol_error("empty message", out);
    const auto m = std::to_integer<std::uint8_t>(payload[0]);
    bytes p = payload;
    switch (m) {
    case msg::global_request: return on_global_request(p, out);
    case msg::request_success: return on_request_reply(true, p, out);
    case msg::request_failure: return on_request_reply(false, p, out);
    case msg::channel_open: return on_open(p, out);
    case msg::channel_open_confirmation: return on_open_confirmation(p, out);
    case msg::channel_open_failure: return on_open_failure(p, out);
    case msg::channel_window_adjust: return on_window_adjust(p, out);
    case msg::channel_data: return on_data(payload, false, out);
    case msg::channel_extended_data: return on_data(payload, true, out);
    case msg::channel_eof: return on_eof(p, out);
    case msg::channel_close: return on_close(p, out);
    case msg::channel_request: return on_channel_request(p, out);
    case msg::channel_success:
    case msg::channel_failure: return on_channel_reply(p, out);
    default: break;
    }
    if (m >= msg::userauth_first && m < msg::connection_first) {
        return conn_event{};  // late authentication traffic: ignored (RFC 4252 §5.1)
    }
    if (m < msg::userauth_first) return protocol_error("service message after authentication", out);
    // Unknown numbers in 101..255: tell the peer, keep going (RFC 4253 §11.4).
    if (auto s = t_.send_unimplemented(t_.recv_seq() - 1, out); !s) return fail(s.err());
    return conn_event{};
}

result<conn_event> connection::on_global_request(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto name = r.text();
    auto want = r.boolean();
    if (!name || !want) return protocol_error("malformed GLOBAL_REQUEST", out);
    bool ok = false;
    std::uint32_t bound = 0;
    bool send_port = false;
    if (*name == kTcpipForward || *name == kCancelTcpipForward) {
        auto addr = r.text();
        auto port = r.u32();
        if (!addr || !port || !r.expect_end()) return protocol_error("malformed forward request", out);
        if (t_.self() != role::server) {
            ok = false;  // only servers listen for their peers
        } else if (*name == kTcpipForward) {
            if (forwards_.size() < cfg_.limits.max_forwards && cfg_.policy) {
                bound = *port;
                ok = cfg_.policy->tcpip_forward(*addr, *port, bound);
                if (ok) {
                    forwards_.emplace_back(std::string(*addr), bound);
                    send_port = *port == 0;
                }
            }
        } else {
            // Only bindings this session made can be cancelled (and free a slot).
            auto it = std::find_if(forwards_.begin(), forwards_.end(), [&](const auto& f) {
                return f.first == *addr && f.second == *port;
            });
            ok = it != forwards_.end() && cfg_.policy &&
                 cfg_.policy->cancel_tcpip_forward(*addr, *port);
            if (ok) forwards_.erase(it);
        }
    } else if (*name == kKeepalive) {
        ++keepalives_;
        ok = true;  // proof of life: any answer does, a positive one is clearer
    } else if (*name == kNoMoreSessions) {
        no_more_sessions_ = true;
        ok = true;
    }
    if (!*want) return conn_event{};
    scratch_.clear();
    writer w(scratch_);
    w.u8(ok ? msg::request_success : msg::request_failure);
    if (ok && send_port) w.u32(bound);
    if (auto s = send_small(scratch_, out); !s) return fail(s.err());
    return conn_event{};
}

result<conn_event> connection::on_request_reply(bool ok, bytes payload, buffer_chain& out) {
    if (requests_.empty()) return protocol_error("reply to no global request", out);
    global_kind kind = requests_.front();
    requests_.pop_front();
    conn_event ev;
    ev.type = conn_event_type::global_reply;
    ev.request = kind;
    ev.ok = ok;
    if (ok && kind == global_kind::tcpip_forward && payload.size() >= 5) {
        reader r(payload.subspan(1));
        if (auto port = r.u32()) ev.port = *port;
    }
    return ev;
}

result<conn_event> connection::on_open(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto type = r.text();
    auto sender = r.u32();
    auto window = r.u32();
    auto max_packet = r.u32();
    if (!type || !sender || !window || !max_packet) return protocol_error("malformed CHANNEL_OPEN", out);

    auto refuse = [&](open_failure why, std::string_view text) -> result<conn_event> {
        scratch_.clear();
        writer(scratch_)
            .u8(msg::channel_open_failure)
            .u32(*sender)
            .u32(static_cast<std::uint32_t>(why))
            .string(text)
            .string(std::string_view{});
        if (auto s = send_small(scratch_, out); !s) return fail(s.err());
        return conn_event{};
    };

    open_info info;
    info.type = *type;
    if (*type == "direct-tcpip" || *type == "forwarded-tcpip") {
        auto host = r.text();
        auto port = r.u32();
        auto ohost = r.text();
        auto oport = r.u32();
        if (!host || !port || !ohost || !oport || !r.expect_end()) {
            return protocol_error("malformed tcpip channel open", out);
        }
        // Servers are opened direct-tcpip by clients; clients are opened forwarded-tcpip.
        bool expected = (*type == "direct-tcpip") == (t_.self() == role::server);
        if (!expected) return refuse(open_failure::administratively_prohibited, "wrong direction");
        info.host = *host;
        info.port = *port;
        info.origin_host = *ohost;
        info.origin_port = *oport;
    } else if (*type == "session") {
        // RFC 4254 §6.1: clients should refuse session channels from servers.
        if (t_.self() == role::client) return refuse(open_failure::administratively_prohibited, "not a server");
        if (no_more_sessions_) return refuse(open_failure::administratively_prohibited, "no more sessions");
    } else {
        return refuse(open_failure::unknown_channel_type, "unknown channel type");
    }
    if (*max_packet < cfg_.limits.min_peer_packet) {
        return refuse(open_failure::resource_shortage, "maximum packet size too small");
    }
    auto id = allocate();
    if (!id) return refuse(open_failure::resource_shortage, "too many channels");
    channel& c = channels_[*id];
    c.state = chan_state::opening_in;
    c.peer_id = *sender;
    c.peer_window = *window;
    c.peer_max_packet = *max_packet;
    conn_event ev;
    ev.type = conn_event_type::open_request;
    ev.id = *id;
    ev.open = info;
    return ev;
}

result<conn_event> connection::on_open_confirmation(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    auto sender = r.u32();
    auto window = r.u32();
    auto max_packet = r.u32();
    if (!recipient || !sender || !window || !max_packet) {
        return protocol_error("malformed CHANNEL_OPEN_CONFIRMATION", out);
    }
    channel* c = ours(*recipient);
    if (!c || c->state != chan_state::opening_out) return protocol_error("unexpected open confirmation", out);
    if (*max_packet < cfg_.limits.min_peer_packet) {
        return protocol_error("maximum packet size too small", out);
    }
    c->state = chan_state::open;
    c->peer_id = *sender;
    c->peer_window = *window;
    c->peer_max_packet = *max_packet;
    conn_event ev;
    ev.type = conn_event_type::opened;
    ev.id = *recipient;
    if (c->sent_close) {
        // The embedder closed it while it was opening: finish that now.
        c->sent_close = false;
        if (auto s = close(*recipient, out); !s) return fail(s.err());
        ev.type = conn_event_type::none;
    }
    return ev;
}

result<conn_event> connection::on_open_failure(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    auto reason = r.u32();
    auto text = r.text();
    if (!recipient || !reason || !text) return protocol_error("malformed CHANNEL_OPEN_FAILURE", out);
    channel* c = ours(*recipient);
    if (!c || c->state != chan_state::opening_out) return protocol_error("unexpected open failure", out);
    release(*recipient);
    conn_event ev;
    ev.type = conn_event_type::open_failed;
    ev.id = *recipient;
    ev.reason = static_cast<open_failure>(*reason);
    ev.text = *text;
    return ev;
}

result<conn_event> connection::on_window_adjust(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    auto add = r.u32();
    if (!recipient || !add || !r.expect_end()) return protocol_error("malformed WINDOW_ADJUST", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    channel& c = **cp;
    if (c.state != chan_state::open) return protocol_error("window adjust before open", out);
    if (std::uint64_t(c.peer_window) + *add > std::numeric_limits<std::uint32_t>::max()) {
        return protocol_error("window over 2^32-1", out);
    }
    c.peer_window += *add;
    conn_event ev;
    if (c.blocked && c.peer_window > 0 && !c.sent_close && !c.sent_eof) {
        c.blocked = false;
        ev.type = conn_event_type::writable;
        ev.id = *recipient;
    }
    return ev;
}

result<conn_event> connection::on_data(mut_bytes payload, bool extended, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    std::uint32_t code = 0;
    if (extended) {
        auto c = r.u32();
        if (!c) return protocol_error("malformed EXTENDED_DATA", out);
        code = *c;
    }
    auto data = r.string();
    if (!recipient || !data || !r.expect_end()) return protocol_error("malformed CHANNEL_DATA", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    channel& c = **cp;
    if (c.state != chan_state::open) return protocol_error("data before open", out);
    if (c.got_eof) return protocol_error("data after EOF", out);
    if (data->size() > cfg_.limits.max_packet) return protocol_error("data over maximum packet", out);
    if (data->size() > c.local_window) return protocol_error("window exceeded", out);
    c.local_window -= static_cast<std::uint32_t>(data->size());
    conn_event ev;
    if (c.sent_close) {
        // In flight when we closed: dropped, and nobody will consume it.
        return ev;
    }
    ev.type = conn_event_type::data;
    ev.id = *recipient;
    ev.ext = code;
    const std::size_t off = static_cast<std::size_t>(data->data() - payload.data());
    ev.data = payload.subspan(off, data->size());
    return ev;
}

result<conn_event> connection::on_eof(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    if (!recipient || !r.expect_end()) return protocol_error("malformed CHANNEL_EOF", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    channel& c = **cp;
    if (c.state != chan_state::open) return protocol_error("EOF before open", out);
    if (c.got_eof) return protocol_error("second EOF", out);
    c.got_eof = true;
    conn_event ev;
    if (c.sent_close) return ev;
    ev.type = conn_event_type::eof;
    ev.id = *recipient;
    return ev;
}

result<conn_event> connection::on_close(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    if (!recipient || !r.expect_end()) return protocol_error("malformed CHANNEL_CLOSE", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    channel& c = **cp;
    if (c.state != chan_state::open) return protocol_error("CLOSE before open", out);
    if (c.got_close) return protocol_error("second CLOSE", out);
    c.got_close = true;
    if (!c.sent_close) {
        // RFC 4254 §5.3: answer with our CLOSE; the channel is then gone on both sides.
        scratch_.clear();
        writer(scratch_).u8(msg::channel_close).u32(c.peer_id);
        if (auto s = send_small(scratch_, out); !s) return fail(s.err());
    }
    release(*recipient);
    conn_event ev;
    ev.type = conn_event_type::closed;
    ev.id = *recipient;
    return ev;
}

result<conn_event> connection::on_channel_request(bytes payload, buffer_chain& out) {
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    auto type = r.text();
    auto want = r.boolean();
    if (!recipient || !type || !want) return protocol_error("malformed CHANNEL_REQUEST", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    channel& c = **cp;
    if (c.state != chan_state::open) return protocol_error("request before open", out);
    bool ok = false;
    if (silent_request(*type)) {
        ok = true;
    } else if (cfg_.policy && !c.sent_close) {
        ok = cfg_.policy->channel_request(*recipient, *type, r.rest());
    }
    if (!*want || c.sent_close) return conn_event{};
    scratch_.clear();
    writer(scratch_).u8(ok ? msg::channel_success : msg::channel_failure).u32(c.peer_id);
    if (auto s = send_small(scratch_, out); !s) return fail(s.err());
    return conn_event{};
}

result<conn_event> connection::on_channel_reply(bytes payload, buffer_chain& out) {
    // We never send channel requests that want a reply, so any answer is out of order.
    reader r(payload.subspan(1));
    auto recipient = r.u32();
    if (!recipient || !r.expect_end()) return protocol_error("malformed channel reply", out);
    FERRY_TRY(cp, peer_channel(*recipient, out));
    (void)cp;
    return protocol_error("channel reply without a request", out);
}

// ---- outbound ---------------------------------------------------------------------------------

result<std::uint32_t> connection::open(std::string_view type, bytes extra, buffer_chain& out) {
    if (!t_.established()) return fail(errc::closed, "session not established");
    FERRY_TRY(id, allocate());
    channel& c = channels_[*id];
    c.state = chan_state::opening_out;
    scratch_.clear();
    writer(scratch_)
        .u8(msg::channel_open)
        .string(type)
        .u32(*id)
        .u32(cfg_.limits.window)
        .u32(cfg_.limits.max_packet)
        .raw(extra);
    if (auto s = send_small(scratch_, out); !s) {
        release(*id);
        return fail(s.err());
    }
    return *id;
}

result<std::uint32_t> connection::open_direct_tcpip(std::string_view host, std::uint32_t port,
                                                    std::string_view origin_host,
                                                    std::uint32_t origin_port,
                                                    buffer_chain& out) {
    std::vector<std::byte> extra;
    writer(extra).string(host).u32(port).string(origin_host).u32(origin_port);
    return open("direct-tcpip", extra, out);
}

result<std::uint32_t> connection::open_forwarded_tcpip(std::string_view bound_address,
                                                       std::uint32_t bound_port,
                                                       std::string_view origin_host,
                                                       std::uint32_t origin_port,
                                                       buffer_chain& out) {
    std::vector<std::byte> extra;
    writer(extra).string(bound_address).u32(bound_port).string(origin_host).u32(origin_port);
    return open("forwarded-tcpip", extra, out);
}

status connection::confirm_open(std::uint32_t id, buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::opening_in) return fail(errc::invalid_argument, "no open request");
    scratch_.clear();
    writer(scratch_)
        .u8(msg::channel_open_confirmation)
        .u32(c->peer_id)
        .u32(id)
        .u32(cfg_.limits.window)
        .u32(cfg_.limits.max_packet);
    FERRY_TRY(s, send_small(scratch_, out));
    c->state = chan_state::open;
    return {};
}

status connection::refuse_open(std::uint32_t id, open_failure reason, std::string_view text,
                               buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::opening_in) return fail(errc::invalid_argument, "no open request");
    scratch_.clear();
    writer(scratch_)
        .u8(msg::channel_open_failure)
        .u32(c->peer_id)
        .u32(static_cast<std::uint32_t>(reason))
        .string(text)
        .string(std::string_view{});
    release(id);  // whatever send does, the id is ours again
    return send_small(scratch_, out);
}

result<std::size_t> connection::send_chunks(std::uint32_t id, std::optional<std::uint32_t> code,
                                            bytes data, buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::open) return fail(errc::invalid_argument, "channel not open");
    if (c->sent_eof || c->sent_close) return fail(errc::closed, "channel closed for sending");
    const std::size_t head_size = code ? kExtHead : kDataHead;
    const std::size_t max_chunk =
        std::min<std::size_t>(c->peer_max_packet, t_.max_payload() - head_size);
    std::size_t sent = 0;
    while (sent < data.size()) {
        // Data leaves a reserve in the rekey queue: control messages (CLOSE, WINDOW_ADJUST,
        // replies, opens) must still fit while our side of a key exchange holds output back.
        const std::size_t room = t_.send_room();
        const std::size_t reserve =
            head_size + std::min<std::size_t>(cfg_.limits.kex_control_reserve,
                                              t_.kex_queue_limit() / 4);
        if (room <= reserve) {
            if (!c->kex_blocked) {
                c->kex_blocked = true;
                kex_blocked_.push_back(id);
            }
            break;
        }
        std::size_t n = std::min({data.size() - sent, max_chunk, std::size_t(c->peer_window),
                                  room - reserve});
        if (n == 0) {
            c->blocked = true;
            break;
        }
        std::array<std::byte, kExtHead> head;
        head[0] = std::byte(code ? msg::channel_extended_data : msg::channel_data);
        store_be32(head.data() + 1, c->peer_id);
        if (code) {
            store_be32(head.data() + 5, *code);
            store_be32(head.data() + 9, static_cast<std::uint32_t>(n));
        } else {
            store_be32(head.data() + 5, static_cast<std::uint32_t>(n));
        }
        FERRY_TRY(s, t_.send(bytes(head.data(), head_size), data.subspan(sent, n), out));
        c->peer_window -= static_cast<std::uint32_t>(n);
        sent += n;
    }
    return sent;
}

result<std::size_t> connection::send_data(std::uint32_t id, bytes data, buffer_chain& out) {
    return send_chunks(id, std::nullopt, data, out);
}

result<std::size_t> connection::send_extended(std::uint32_t id, std::uint32_t code, bytes data,
                                              buffer_chain& out) {
    return send_chunks(id, code, data, out);
}

status connection::consumed(std::uint32_t id, std::size_t n, buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::open) return fail(errc::invalid_argument, "channel not open");
    const std::uint64_t owed = std::uint64_t(c->owed) + n;
    if (owed + c->local_window > cfg_.limits.window) {
        return fail(errc::invalid_argument, "consumed more than was received");
    }
    c->owed = static_cast<std::uint32_t>(owed);
    // One WINDOW_ADJUST per half window: few messages, and the peer never stalls on a full one.
    if (c->owed < cfg_.limits.window / 2 || c->got_eof || c->sent_close) return {};
    scratch_.clear();
    writer(scratch_).u8(msg::channel_window_adjust).u32(c->peer_id).u32(c->owed);
    if (auto s = send_small(scratch_, out); !s) {
        c->owed -= static_cast<std::uint32_t>(n);  // not counted: the caller may retry
        return s;
    }
    c->local_window += c->owed;
    c->owed = 0;
    return {};
}

status connection::send_eof(std::uint32_t id, buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::open) return fail(errc::invalid_argument, "channel not open");
    if (c->sent_eof || c->sent_close) return {};
    scratch_.clear();
    writer(scratch_).u8(msg::channel_eof).u32(c->peer_id);
    FERRY_TRY(s, send_small(scratch_, out));
    c->sent_eof = true;
    return {};
}

status connection::close(std::uint32_t id, buffer_chain& out) {
    channel* c = ours(id);
    if (!c) return fail(errc::invalid_argument, "unknown channel");
    if (c->sent_close) return {};
    if (c->state == chan_state::opening_in) {
        return refuse_open(id, open_failure::connect_failed, "closed", out);
    }
    if (c->state == chan_state::opening_out) {
        c->sent_close = true;  // CLOSE follows the confirmation
        return {};
    }
    scratch_.clear();
    writer(scratch_).u8(msg::channel_close).u32(c->peer_id);
    FERRY_TRY(s, send_small(scratch_, out));
    c->sent_close = true;
    return {};
}

status connection::send_request(std::uint32_t id, std::string_view type, bytes data,
                                buffer_chain& out) {
    channel* c = ours(id);
    if (!c || c->state != chan_state::open || c->sent_close) {
        return fail(errc::invalid_argument, "channel not open");
    }
    scratch_.clear();
    writer(scratch_).u8(msg::channel_request).u32(c->peer_id).string(type).boolean(false).raw(data);
    return send_small(scratch_, out);
}

status connection::send_global(std::string_view name, bool want_reply, bytes data,
                               global_kind kind, buffer_chain& out) {
    if (want_reply && requests_.size() >= cfg_.limits.max_outstanding_requests) {
        return fail(errc::limit_exceeded, "too many global requests outstanding");
    }
    scratch_.clear();
    writer(scratch_).u8(msg::global_request).string(name).boolean(want_reply).raw(data);
    FERRY_TRY(s, send_small(scratch_, out));
    if (want_reply) requests_.push_back(kind);
    return {};
}

status connection::request_tcpip_forward(std::string_view address, std::uint32_t port,
                                         buffer_chain& out) {
    std::vector<std::byte> d;
    writer(d).string(address).u32(port);
    return send_global(kTcpipForward, true, d, global_kind::tcpip_forward, out);
}

status connection::cancel_tcpip_forward(std::string_view address, std::uint32_t port,
                                        buffer_chain& out) {
    std::vector<std::byte> d;
    writer(d).string(address).u32(port);
    return send_global(kCancelTcpipForward, true, d, global_kind::cancel_tcpip_forward, out);
}

status connection::send_keepalive(buffer_chain& out) {
    return send_global(kKeepalive, true, {}, global_kind::keepalive, out);
}

std::optional<std::uint32_t> connection::writable_after_kex() noexcept {
    // One drain hands out the channels blocked before it started: a channel that blocks again
    // while the caller drains (the next exchange already began) waits for the next drain.
    if (!draining_) {
        draining_ = true;
        drain_.clear();
        drain_.swap(kex_blocked_);
    }
    while (!drain_.empty()) {
        std::uint32_t id = drain_.back();
        drain_.pop_back();
        if (id < channels_.size() && channels_[id].kex_blocked) {
            channels_[id].kex_blocked = false;
            if (is_open(id)) return id;
        }
    }
    draining_ = false;
    return std::nullopt;
}

}  // namespace ferry::ssh
