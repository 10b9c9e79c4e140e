#pragma once
// The SSH transport layer (RFC 4253) for both roles, sans-IO.
//
//   transport t(cfg);                  // cfg names the role, keys, verifier, rng and limits
//   t.start(out, now);                 // our version line and first KEXINIT
//   for (;;) {                         // for every chunk of bytes from the peer:
//       auto ev = t.feed(in, out, now);   // advances `in`; one event per call
//       if (!ev) { flush(out); close(); }  // DISCONNECT (right reason) is already in `out`
//       if (ev->type == event_type::need_more) break;
//       ...handle *ev...
//   }
//   t.send(payload, out);              // upper-layer messages (auth, connection)
//   t.tick(out, now);                  // now and then: time-based rekeying
//
// Ownership and threading: a transport lives on one shard. It never reads a clock (`now` is a
// monotonic time in milliseconds chosen by the caller) and owns no fd. Output is appended to the
// caller's buffer_chain. Payload views in events point into the caller's input span (or into the
// transport's reassembly buffer) and are valid until the next call on the transport.
//
// Key exchange: curve25519-sha256 (+ @libssh.org), host key ssh-ed25519, strict KEX
// (kex-strict-[cs]-v00@openssh.com: sequence numbers reset at every NEWKEYS; during the initial
// exchange KEXINIT must be the first packet and anything but the exchange's own messages is
// fatal), ext-info-c / server-sig-algs (RFC 8308), rekeying by bytes, packets, time (once
// allow_automatic_rekey() was called), on request and when the peer starts one. While our side of a rekey is in progress, upper-layer messages
// are queued (bounded) and flushed after our NEWKEYS: channels keep going, nothing is dropped.
//
// Every error ends the session: feed() appends a DISCONNECT with the matching reason
// (MAC_ERROR, PROTOCOL_ERROR, KEY_EXCHANGE_FAILED, HOST_KEY_NOT_VERIFIABLE, ...) and returns the
// error; later calls fail with errc::closed. Nothing on peer input asserts or throws.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/cipher.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/hostkey.hh"
#include "proto/ssh/kex.hh"
#include "proto/ssh/packet.hh"
#include "proto/ssh/version.hh"
#include "proto/ssh/wire.hh"

namespace ferry::ssh {

using millis = std::uint64_t;  // caller's monotonic clock, milliseconds

struct transport_limits {
    packet_limits packet;
    version_limits version;
    // Rekey after this many bytes in either direction under one set of keys (default 1 GiB).
    std::uint64_t rekey_bytes = std::uint64_t(1) << 30;
    // ... or this many packets (keeps ChaCha20 nonces and GCM counters far from reuse).
    std::uint64_t rekey_packets = std::uint64_t(1) << 31;
    // ... or after this long (default 1 hour).
    millis rekey_interval = 3600 * 1000;
    // Upper-layer payload bytes held while our side of a rekey runs; send() fails with
    // errc::limit_exceeded beyond it (the connection layer stops reading its sources).
    std::size_t max_kex_queue_bytes = 16 * 1024 * 1024;
};

struct transport_config {
    role self = role::client;
    std::string version = "SSH-2.0-ferry_0.1";
    // Preference lists, best first (comma-separated, only supported names).
    std::string kex = "curve25519-sha256,curve25519-sha256@libssh.org";
    std::string ciphers =
        "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,"
        "aes256-ctr,aes128-ctr";
    std::string macs =
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";
    // Offer strict KEX (the Terrapin fix). `require_strict_kex` refuses peers without it.
    bool strict_kex = true;
    bool require_strict_kex = false;
    // Server: the host key (not owned; shard-local, must outlive the transport) and the
    // signature algorithms announced in EXT_INFO server-sig-algs (RFC 8308 §3.1).
    ed25519_private* host_key = nullptr;
    std::string server_sig_algs = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-256,rsa-sha2-512";
    // Client: decides whether the server's host key is trusted (not owned).
    host_key_verifier* verifier = nullptr;
    // Randomness for cookies, ephemeral keys and padding (not owned).
    rng* random = nullptr;
    transport_limits limits;
};

enum class event_type : std::uint8_t {
    need_more,       // all input consumed; nothing else to report
    handshake_done,  // first key exchange complete: send()/upper layers may start
    rekey_done,      // a later key exchange completed
    message,         // upper-layer payload (SERVICE_REQUEST/ACCEPT or >= 50): `payload`, `seq`
    ext_info,        // client: the server's EXT_INFO arrived; see server_sig_algs()
    debug,           // SSH_MSG_DEBUG: `text`, `always_display`
    unimplemented,   // SSH_MSG_UNIMPLEMENTED: `seq` = our packet the peer did not know
    disconnected,    // the peer sent DISCONNECT: `reason`, `text`; the session is over
};
const char* to_string(event_type t) noexcept;

struct event {
    event_type type = event_type::need_more;
    mut_bytes payload{};
    std::uint32_t seq = 0;
    disconnect_reason reason = disconnect_reason::none;
    std::string_view text{};
    bool always_display = false;
};

class transport {
public:
    explicit transport(transport_config cfg);
    ~transport();
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;

    // Validates the configuration and appends our version line and first KEXINIT.
    status start(buffer_chain& out, millis now);
    // Consumes bytes from the front of `in` until one event is ready or `in` is empty
    // (event_type::need_more). `in` is modified in place (packets are decrypted there).
    result<event> feed(mut_bytes& in, buffer_chain& out, millis now);
    // Sends an upper-layer payload (message number 5, 6 or >= 50) as head || body. Allowed once
    // handshake_done was reported; queued during a rekey.
    status send(bytes head, bytes body, buffer_chain& out);
    status send(bytes payload, buffer_chain& out) { return send(payload, {}, out); }
    status send_ignore(bytes data, buffer_chain& out);
    status send_debug(std::string_view text, bool always_display, buffer_chain& out);
    status send_unimplemented(std::uint32_t seq, buffer_chain& out);
    // Time-based housekeeping: starts a rekey when the interval has passed.
    status tick(buffer_chain& out, millis now);
    // Starts a key re-exchange now (no-op while one runs).
    status rekey(buffer_chain& out, millis now);
    // Automatic rekeying (bytes, packets, time) starts only after this call. OpenSSH, both ssh
    // and sshd, treats a KEXINIT during user authentication as a protocol error, so the auth
    // layer calls it on USERAUTH_SUCCESS. Peer-initiated and explicit rekeys are not affected.
    void allow_automatic_rekey() noexcept { auto_rekey_ = true; }
    // Sends DISCONNECT (if the peer can still be told) and closes. Idempotent.
    void disconnect(disconnect_reason r, std::string_view description, buffer_chain& out);

    role self() const noexcept { return cfg_.self; }
    bool established() const noexcept { return first_kex_done_ && !closed_; }
    bool in_kex() const noexcept { return kex_.active; }
    bool closed() const noexcept { return closed_; }
    bool strict_kex() const noexcept { return strict_; }
    const algorithms& negotiated() const noexcept { return algs_; }
    bytes session_id() const noexcept { return session_id_; }
    const std::string& peer_version() const noexcept { return version_.peer_version(); }
    // Client: the server's host key blob from the last exchange.
    bytes peer_host_key() const noexcept { return peer_host_key_; }
    // Client: server-sig-algs from the server's EXT_INFO (empty if none).
    const std::string& server_sig_algs() const noexcept { return peer_sig_algs_; }
    // Reason we closed with (none if still open or closed by the peer).
    disconnect_reason close_reason() const noexcept { return close_reason_; }
    std::size_t queued_bytes() const noexcept { return queue_bytes_; }
    // How many more upper-layer bytes send() takes now: unbounded, except while our side of a
    // rekey holds messages back (then what is left of max_kex_queue_bytes).
    std::size_t send_room() const noexcept {
        if (!kex_.active || kex_.sent_newkeys) return SIZE_MAX;
        return cfg_.limits.max_kex_queue_bytes - queue_bytes_;
    }
    std::size_t kex_queue_limit() const noexcept { return cfg_.limits.max_kex_queue_bytes; }
    // When tick() should next run for time-based rekeying (0: not armed, or an exchange is
    // already running: the next deadline exists once it finished).
    millis rekey_deadline() const noexcept {
        return auto_rekey_ && first_kex_done_ && !closed_ && !kex_.active
                   ? last_kex_ + cfg_.limits.rekey_interval
                   : 0;
    }
    std::uint32_t kex_count() const noexcept { return kex_count_; }
    // The largest upper-layer payload send() accepts.
    std::size_t max_payload() const noexcept { return pkt_.max_payload(); }
    // Sequence numbers of the next packet in each direction (strict KEX resets them).
    std::uint32_t send_seq() const noexcept { return pkt_.send_seq(); }
    std::uint32_t recv_seq() const noexcept { return pkt_.recv_seq(); }

private:
    // Tests and fuzz targets inject arbitrary (even invalid) payloads through this; it is only
    // ever defined in tests/ and fuzz/.
    friend struct transport_test_access;

    struct kex_state {
        bool active = false;
        bool sent_kexinit = false;
        bool got_kexinit = false;
        bool ecdh_done = false;  // client: reply processed; server: reply sent
        bool sent_newkeys = false;
        bool got_newkeys = false;
        bool skip_next = false;  // peer's wrongly guessed kex packet
        std::vector<std::byte> ours, theirs;  // KEXINIT payloads (I_C / I_S)
        x25519_key eph_priv{}, eph_pub{};
        std::unique_ptr<packet_cipher> next_rx;
    };

    result<std::optional<event>> dispatch(inbound_packet p, buffer_chain& out, millis now);
    result<std::optional<event>> on_kexinit(bytes payload, std::uint32_t seq, buffer_chain& out);
    status on_ecdh_init(bytes payload, buffer_chain& out);
    status on_ecdh_reply(bytes payload, buffer_chain& out);
    result<std::optional<event>> on_newkeys(millis now);
    status on_ext_info(bytes payload);
    status begin_kex(buffer_chain& out);
    status send_kexinit(buffer_chain& out);
    status client_send_ecdh_init(buffer_chain& out);
    status install_keys(const std::array<std::byte, 32>& h, bytes shared, buffer_chain& out);
    status send_newkeys(buffer_chain& out);
    status flush_queue(buffer_chain& out);
    status write_now(bytes head, bytes body, buffer_chain& out);
    bool rekey_due(millis now) const noexcept;
    failure fatal(const error& e, buffer_chain& out);

    transport_config cfg_;
    version_parser version_;
    packet_layer pkt_;
    kex_state kex_;
    algorithms algs_;       // in force
    algorithms kex_algs_;   // being negotiated
    bool started_ = false;
    bool first_kex_done_ = false;
    bool strict_ = false;
    bool closed_ = false;
    bool auto_rekey_ = false;
    disconnect_reason close_reason_ = disconnect_reason::none;
    std::uint32_t kex_count_ = 0;
    millis last_kex_ = 0;
    std::vector<std::byte> session_id_;
    std::vector<std::byte> peer_host_key_;
    std::string peer_sig_algs_;
    std::deque<std::vector<std::byte>> queue_;
    std::size_t queue_bytes_ = 0;
    std::vector<std::byte> scratch_;
};

}  // namespace ferry::ssh
