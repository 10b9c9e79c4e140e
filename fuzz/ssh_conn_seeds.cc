// Writes the seed corpora of the fuzz targets `ssh_server` and `ssh_client`
// (fuzz/corpus/ssh_server, fuzz/corpus/ssh_client): meaningful peer conversations in the input
// layout of fuzz/ssh_conn_fuzz.hh, built with that file's own harness so that the recorded
// raw flights (mode 0) decrypt under the target's deterministic keys.
//   ssh_conn_seeds CORPUS_DIR        (CORPUS_DIR: fuzz/corpus)
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "ssh_conn_fuzz.hh"

using namespace ssh_conn_fuzz;

namespace {

using payload = std::vector<std::byte>;
using payloads = std::vector<payload>;

std::string g_root;
int g_n = 0;

void write_seed(std::string_view target, const std::string& name, const std::string& body) {
    std::ofstream(g_root + "/" + std::string(target) + "/" + std::to_string(g_n++) + "-" + name,
                  std::ios::binary)
        << body;
}

// A mode 1/2 seed: header, then one chunk per payload (empty payload: the peer rekeys).
std::string conversation(int mode, bool small, std::uint8_t stride, const payloads& ps) {
    std::string s;
    s += char(mode | (small ? kSmallLimits : 0));
    s += char(stride);
    for (auto& p : ps) put_chunk(s, p);
    return s;
}

// ---- payload builders (the peer's side of RFC 4254) -------------------------------------------

payload open_tcpip(std::string_view type, std::uint32_t sender, std::uint32_t window,
                   std::uint32_t max_packet, std::string_view host = "target",
                   std::uint32_t port = 80) {
    payload p;
    writer(p).u8(msg::channel_open).string(type).u32(sender).u32(window).u32(max_packet)
        .string(host).u32(port).string("198.51.100.1").u32(40000);
    return p;
}
payload open_direct(std::uint32_t sender, std::uint32_t window = 65536,
                    std::uint32_t max_packet = 32768) {
    return open_tcpip("direct-tcpip", sender, window, max_packet);
}
payload open_session(std::uint32_t sender) {
    payload p;
    writer(p).u8(msg::channel_open).string("session").u32(sender).u32(65536).u32(32768);
    return p;
}
payload confirm(std::uint32_t recipient, std::uint32_t sender, std::uint32_t window = 65536,
                std::uint32_t max_packet = 32768) {
    payload p;
    writer(p).u8(msg::channel_open_confirmation).u32(recipient).u32(sender).u32(window).u32(max_packet);
    return p;
}
payload open_failure_msg(std::uint32_t recipient, std::uint32_t reason, std::string_view text) {
    payload p;
    writer(p).u8(msg::channel_open_failure).u32(recipient).u32(reason).string(text).string("en");
    return p;
}
payload data(std::uint32_t recipient, std::size_t n, char fill = 'd') {
    payload p;
    writer(p).u8(msg::channel_data).u32(recipient).string(std::string(n, fill));
    return p;
}
payload ext_data(std::uint32_t recipient, std::uint32_t code, std::string_view s) {
    payload p;
    writer(p).u8(msg::channel_extended_data).u32(recipient).u32(code).string(s);
    return p;
}
payload adjust(std::uint32_t recipient, std::uint32_t n) {
    payload p;
    writer(p).u8(msg::channel_window_adjust).u32(recipient).u32(n);
    return p;
}
payload eof(std::uint32_t recipient) {
    payload p;
    writer(p).u8(msg::channel_eof).u32(recipient);
    return p;
}
payload close_msg(std::uint32_t recipient) {
    payload p;
    writer(p).u8(msg::channel_close).u32(recipient);
    return p;
}
payload chreq(std::uint32_t recipient, std::string_view type, bool want, payload extra = {}) {
    payload p;
    writer(p).u8(msg::channel_request).u32(recipient).string(type).boolean(want).raw(extra);
    return p;
}
payload chreply(bool ok, std::uint32_t recipient) {
    payload p;
    writer(p).u8(ok ? msg::channel_success : msg::channel_failure).u32(recipient);
    return p;
}
payload global(std::string_view name, bool want, payload extra = {}) {
    payload p;
    writer(p).u8(msg::global_request).string(name).boolean(want).raw(extra);
    return p;
}
payload forward(std::string_view name, std::string_view addr, std::uint32_t port) {
    payload e;
    writer(e).string(addr).u32(port);
    return global(name, true, e);
}
payload u32s(std::initializer_list<std::uint32_t> l) {
    payload p;
    for (auto x : l) writer(p).u32(x);
    return p;
}
payload strs(std::initializer_list<std::string_view> l) {
    payload p;
    for (auto x : l) writer(p).string(x);
    return p;
}
payload bytes_of(std::initializer_list<int> l) {
    payload p;
    for (int x : l) p.push_back(std::byte(x));
    return p;
}
payload pty_req() {
    payload e;
    writer(e).string("xterm-256color").u32(80).u32(24).u32(640).u32(480).string(std::string("\x00", 1));
    return e;
}
payload service(std::uint8_t m) {
    payload p;
    writer(p).u8(m).string("ssh-userauth");
    return p;
}
payload userauth_password(std::string_view user, std::string_view pw) {
    payload p;
    writer(p).u8(msg::userauth_request).string(user).string("ssh-connection").string("password")
        .boolean(false).string(pw);
    return p;
}
payload userauth_none(std::string_view user) {
    payload p;
    writer(p).u8(msg::userauth_request).string(user).string("ssh-connection").string("none");
    return p;
}
payload userauth_failure(std::string_view methods) {
    payload p;
    writer(p).u8(msg::userauth_failure).string(methods).boolean(false);
    return p;
}
payload userauth_banner(std::string_view text) {
    payload p;
    writer(p).u8(msg::userauth_banner).string(text).string("");
    return p;
}
const payload kRekey{};  // an empty chunk: the peer starts a real rekey
// Sealed now, delivered together with the next payload (leading 0x00).
payload held(payload p) {
    p.insert(p.begin(), std::byte{0});
    return p;
}

// ---- recorded raw flights (mode 0) ------------------------------------------------------------

// Everything a real peer sends to a fresh victim through the handshake, authentication and
// `extra` payloads (sealed by the peer), recorded with the target's own harness.
std::vector<std::byte> record_flight(role r, bool small, const payloads& extra) {
    victim v(r, small);
    peer p(other(r), small);
    std::vector<std::byte> sent;
    auto pass = [&] {
        auto w = p.take();
        sent.insert(sent.end(), w.begin(), w.end());
        v.feed(std::move(w), 0);
        v.step();
        p.feed(v.take());
    };
    for (int i = 0; i < 32; ++i) {
        if (v.s->authenticated() && p.s->authenticated() && v.out.empty() && p.out.empty()) break;
        pass();
    }
    if (!v.s->authenticated()) __builtin_trap();
    p.raw = true;
    for (auto& e : extra) {
        p.inject(e);
        for (int i = 0; i < 4; ++i) pass();
    }
    return sent;
}

std::string raw_seed(bool small, std::uint8_t stride, bytes wire,
                     std::size_t chunk) {
    std::string s;
    s += char(0 | (small ? kSmallLimits : 0));
    s += char(stride);
    bytes w = wire;
    while (!w.empty()) {
        std::size_t k = std::min(chunk, w.size());
        put_chunk(s, w.first(k));
        w = w.subspan(k);
    }
    return s;
}

struct seed {
    std::string name;
    int mode;
    bool small;
    std::uint8_t stride;
    payloads ps;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_root = argv[1];

    // ---- server victim: what a client sends -------------------------------------------------
    // The victim numbers channels from 0 (freed ids are reused, last freed first) and refuses
    // every third open request.
    std::vector<seed> server = {
        {"open-data-eof-close", 2, false, 0,
         {open_direct(100), data(0, 5, 'p'), adjust(0, 1000), eof(0), close_msg(0)}},
        {"open-data-split", 2, false, 3, {open_direct(100), data(0, 300), data(0, 2), close_msg(0)}},
        {"three-opens-one-refused", 2, false, 0,
         {open_direct(100), open_direct(101), open_direct(102), data(1, 10), close_msg(0),
          close_msg(1)}},
        {"session-requests", 2, false, 0,
         {open_session(100), chreq(0, "pty-req", true, pty_req()), chreq(0, "shell", true),
          chreq(0, "exec", true, strs({"uptime"})), chreq(0, "env", false, strs({"LANG", "C"})),
          chreq(0, "subsystem", true, strs({"sftp"})), chreq(0, "window-change", false, u32s({100, 40, 0, 0})),
          close_msg(0)}},
        {"forward-port0-then-forwarded-channel", 2, false, 0,
         {forward("tcpip-forward", "fuzz", 0), confirm(0, 200), data(0, 64), adjust(0, 4096), eof(0),
          close_msg(0)}},
        {"forward-refused-forwarded", 2, false, 0,
         {forward("tcpip-forward", "tun", 8080), open_failure_msg(0, 2, "connect failed"),
          forward("cancel-tcpip-forward", "tun", 8080)}},
        {"forward-deny-cancel-keepalive", 2, false, 0,
         {forward("tcpip-forward", "deny", 80), forward("cancel-tcpip-forward", "fuzz", 0),
          global("keepalive@openssh.com", true), global("unknown@example.com", true),
          global("keepalive@openssh.com", false)}},
        {"no-more-sessions", 2, false, 0,
         {global("no-more-sessions@openssh.com", false), open_session(100), open_direct(101)}},
        {"extended-data", 2, false, 0,
         {open_direct(100), ext_data(0, 1, "stderr"), data(0, 3), eof(0), close_msg(0)}},
        {"echo-blocked-then-adjusted", 2, false, 0,
         {open_direct(100, 10, 64), data(0, 200), adjust(0, 100), adjust(0, 1000), close_msg(0)}},
        {"rekey-mid-transfer", 2, false, 0,
         {open_direct(100), data(0, 1000), kRekey, data(0, 1000), adjust(0, 2000), data(0, 500),
          close_msg(0)}},
        {"small-window-exhausted", 2, true, 0,
         {open_direct(100, 2048, 512), open_direct(101, 2048, 512), data(0, 1024), data(0, 1024),
          data(1, 1024), data(1, 1024), data(0, 1024), adjust(0, 8192), adjust(1, 8192),
          data(0, 1024), eof(1), close_msg(1)}},
        {"small-channel-limit", 2, true, 0,
         {open_direct(100), open_direct(101), open_direct(102), open_direct(103), open_direct(104),
          open_direct(105), open_direct(106), open_direct(107), open_direct(108), close_msg(0),
          open_direct(109)}},
        {"small-rekey-bytes", 2, true, 0,
         [] {
             payloads ps{open_direct(100, 1 << 20, 32768)};
             for (int i = 0; i < 20; ++i) ps.push_back(data(0, 1000, char('a' + i)));
             ps.push_back(adjust(0, 1 << 20));
             return ps;
         }()},
        {"eof-answered-then-close", 2, false, 0, {open_direct(100), eof(0), close_msg(0)}},
        {"v-close-before-confirm-of-forwarded", 2, false, 0,
         {forward("tcpip-forward", "fuzz", 0), close_msg(0)}},
        {"late-auth-and-unknown", 2, false, 0,
         {userauth_none("fuzz"), bytes_of({120, 1, 2, 3}), open_direct(100), data(0, 1)}},
        {"ignore-debug-between", 2, false, 5,
         {open_direct(100), bytes_of({2, 0, 0, 0, 1, 'x'}), data(0, 7),
          bytes_of({4, 1, 0, 0, 0, 2, 'h', 'i', 0, 0, 0, 0}), close_msg(0)}},
        // Violations the victim must answer with DISCONNECT.
        {"v-data-unknown-channel", 2, false, 0, {data(7, 3)}},
        {"v-window-overrun", 2, true, 0,
         {open_direct(100), open_direct(101), held(data(1, 1024)), held(data(1, 1024)),
          held(data(1, 1024)), held(data(1, 1024)), data(1, 1)}},
        {"batched-exactly-window", 2, true, 0,
         {open_direct(100), held(data(0, 1024)), held(data(0, 1024)), held(data(0, 1024)),
          data(0, 1024), data(0, 10), close_msg(0)}},
        {"v-over-max-packet", 2, true, 0, {open_direct(100), data(0, 1025)}},
        {"v-data-after-eof", 2, false, 0, {open_direct(100), eof(0), data(0, 1)}},
        {"v-adjust-overflow", 2, false, 0, {open_direct(100), adjust(0, 0xffffffffu)}},
        {"v-confirm-never-opened", 2, false, 0, {confirm(4, 9)}},
        {"v-failure-never-opened", 2, false, 0, {open_failure_msg(3, 2, "x")}},
        {"v-truncated-open", 2, false, 0, {bytes_of({90, 0, 0, 0, 12, 'd', 'i', 'r'})}},
        {"v-truncated-data", 2, false, 0, {open_direct(100), bytes_of({94, 0, 0, 0, 0, 0, 0, 1})}},
        {"v-channel-reply-unasked", 2, false, 0, {open_direct(100), chreply(true, 0)}},
        {"v-global-reply-unasked", 2, false, 0, {bytes_of({81})}},
        {"v-service-request-after-auth", 2, false, 0, {service(msg::service_request)}},
        // Before authentication (mode 1): the client side of user authentication.
        {"auth-then-open", 1, false, 0,
         {service(msg::service_request), userauth_none("fuzz"), userauth_password("fuzz", "bad"),
          userauth_password("fuzz", "pw"), open_direct(100), data(0, 4), close_msg(0)}},
        {"v-auth-out-of-order", 1, false, 0,
         {open_direct(100), service(msg::service_request), global("keepalive@openssh.com", true)}},
        {"auth-split", 1, false, 1,
         {service(msg::service_request), userauth_password("fuzz", "pw"), open_session(1)}},
    };

    // ---- client victim: what a server sends -------------------------------------------------
    // Once authenticated the victim opened direct-tcpip 0 and 1 and session 2 (unanswered),
    // and its forward request and keepalive were answered by the real peer.
    std::vector<seed> client = {
        {"confirm-data-eof-close", 2, false, 0,
         {confirm(0, 100), data(0, 5, 'p'), adjust(0, 5000), eof(0), close_msg(0)}},
        {"confirm-all-refuse-one", 2, false, 0,
         {confirm(0, 100), open_failure_msg(1, 2, "refused"), confirm(2, 102), data(2, 100),
          chreq(2, "exit-status", false, u32s({0})), eof(2), close_msg(2), close_msg(0)}},
        {"forwarded-open", 2, false, 0,
         {open_tcpip("forwarded-tcpip", 300, 65536, 32768, "fuzz", 4242), data(3, 10), eof(3),
          close_msg(3)}},
        {"forwarded-open-refused-id", 2, false, 0,
         {confirm(0, 100), confirm(1, 101), confirm(2, 102),
          open_tcpip("forwarded-tcpip", 300, 65536, 32768, "fuzz", 4242),
          open_tcpip("forwarded-tcpip", 301, 65536, 32768, "fuzz", 4242), data(3, 1)}},
        {"wrong-direction-open", 2, false, 0, {open_direct(300), open_session(301)}},
        {"server-keepalive", 2, false, 0,
         {global("keepalive@openssh.com", true), global("keepalive@openssh.com", true),
          forward("tcpip-forward", "x", 1)}},
        {"extended-and-requests", 2, false, 0,
         {confirm(2, 100), ext_data(2, 1, "err"), chreq(2, "exit-signal", false,
                                                       strs({"TERM"})),
          chreq(2, "eof@openssh.com", false), chreq(2, "keepalive@openssh.com", true), close_msg(2)}},
        {"echo-blocked-then-adjusted", 2, false, 0,
         {confirm(0, 100, 10, 64), data(0, 200), adjust(0, 100), adjust(0, 1000)}},
        {"rekey-mid-transfer", 2, false, 0,
         {confirm(0, 100), data(0, 1000), kRekey, data(0, 1000), adjust(0, 3000), close_msg(0)}},
        {"small-window", 2, true, 0,
         {confirm(0, 100, 2048, 512), confirm(1, 101, 2048, 512), data(0, 1024), data(0, 1024),
          data(1, 1024), data(1, 1024), adjust(1, 4096), data(1, 1024), eof(0)}},
        {"small-rekey-bytes", 2, true, 7,
         [] {
             payloads ps{confirm(0, 100, 1 << 20, 32768)};
             for (int i = 0; i < 20; ++i) ps.push_back(data(0, 1000, char('a' + i)));
             return ps;
         }()},
        {"v-data-unknown-channel", 2, false, 0, {data(9, 3)}},
        {"v-data-before-confirm", 2, false, 0, {data(0, 3)}},
        {"v-window-overrun", 2, true, 0,
         {confirm(1, 100), held(data(1, 1024)), held(data(1, 1024)), held(data(1, 1024)),
          held(data(1, 1024)), data(1, 1)}},
        {"batched-open-confirm-data", 2, false, 0,
         {held(confirm(0, 100)), held(confirm(1, 101)), held(data(0, 10)), data(1, 10),
          held(eof(0)), held(close_msg(0)), close_msg(1)}},
        {"v-double-confirm", 2, false, 0, {confirm(0, 100), confirm(0, 101)}},
        {"v-adjust-overflow", 2, false, 0, {confirm(0, 100, 100), adjust(0, 0xffffffffu)}},
        {"v-data-after-eof", 2, false, 0, {confirm(0, 100), eof(0), data(0, 2)}},
        {"v-global-reply-unasked", 2, false, 0, {bytes_of({82})}},
        {"v-truncated-confirm", 2, false, 0, {bytes_of({91, 0, 0, 0, 0, 0, 0})}},
        {"v-service-accept-after-auth", 2, false, 0, {service(msg::service_accept)}},
        // Before authentication (mode 1): the server side of user authentication.
        {"auth-answers-then-confirm", 1, false, 0,
         {service(msg::service_accept), userauth_banner("welcome"), userauth_failure("password"),
          bytes_of({52}), confirm(0, 100), data(0, 3)}},
        {"auth-failures", 1, false, 0,
         {service(msg::service_accept), userauth_failure("publickey,password"),
          userauth_failure("publickey,password")}},
        {"auth-out-of-order", 1, false, 0, {bytes_of({52}), confirm(0, 100)}},
    };

    for (auto* list : {&server, &client}) {
        std::string_view target = list == &server ? "ssh_server" : "ssh_client";
        for (auto& s : *list) write_seed(target, s.name, conversation(s.mode, s.small, s.stride, s.ps));
    }

    // Raw flights (mode 0): handshake + authentication + a channel, whole and in small pieces.
    for (role r : {role::server, role::client}) {
        std::string_view target = r == role::server ? "ssh_server" : "ssh_client";
        payloads extra = r == role::server
                             ? payloads{open_direct(100), data(0, 20), eof(0), close_msg(0)}
                             : payloads{confirm(0, 100), data(0, 20), eof(0), close_msg(0)};
        auto w = record_flight(r, false, extra);
        write_seed(target, "raw-flight", raw_seed(false, 0, w, 1000));
        write_seed(target, "raw-flight-small-pieces", raw_seed(false, 0, w, 13));
        write_seed(target, "raw-flight-stride", raw_seed(false, 5, w, 4000));
        auto ws = record_flight(r, true, extra);
        write_seed(target, "raw-flight-small-limits", raw_seed(true, 0, ws, 700));
        std::string banner = "hello\r\nSSH-2.0-fuzz\r\n";
        write_seed(target, "raw-banner", raw_seed(false, 0, as_bytes(banner), 4));
        write_seed(target, "raw-old-version", raw_seed(false, 0, as_bytes(std::string("SSH-1.5-x\r\n")), 100));
    }
    return 0;
}
