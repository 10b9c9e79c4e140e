#include "proto/tls/session.hh"

#include <arpa/inet.h>
#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "proto/base/assert.hh"
#include "proto/tls/detail.hh"

namespace ferry::tls {

class resumption {
public:
    explicit resumption(WOLFSSL_SESSION* s) noexcept : s_(s) {}
    ~resumption() { wolfSSL_SESSION_free(s_); }
    resumption(const resumption&) = delete;
    resumption& operator=(const resumption&) = delete;
    // wolfSSL_set_session copies from it and takes no reference, but its prototype is not const.
    WOLFSSL_SESSION* native() const noexcept { return s_; }

private:
    WOLFSSL_SESSION* s_;
};

namespace {
// Largest plaintext of one record (RFC 8446 section 5.1; 2^14 for TLS 1.2 as well).
constexpr std::size_t max_record_plain = 16384;
constexpr std::uint8_t record_type_handshake = 22;
// Sealed records at least this big get a block of their own (io_send).
constexpr std::size_t large_record = 4096;
}  // namespace

struct session::impl {
    std::shared_ptr<const void> ctx_owner;  // the context outlives its sessions
    WOLFSSL* ssl = nullptr;
    role side = role::server;
    limits lim;
    // The current call's IO (valid only inside next/write/close_notify/start).
    bytes* in = nullptr;
    buffer_chain* out = nullptr;
    // Block receiving decrypted records; data events hand out slices of it.
    block* blk = nullptr;
    bool started = false;
    bool hs_done = false;
    bool peer_closed = false;
    bool sent_close = false;
    bool failed = false;
    bool first_checked = false;
    bool plaintext_http = false;
    error err{};
    std::string name;  // client: the name asked for; server: the client's SNI
    std::string alpn;

    ~impl() {
        if (ssl) wolfSSL_free(ssl);
        if (blk) blk->unref();
    }

    void drop_block() noexcept {
        if (blk) std::exchange(blk, nullptr)->unref();
    }
};

namespace {

// Points the IO callbacks at this call's buffers; clears them again on exit so a stray
// callback outside a call finds nothing.
struct io_scope {
    session::impl& p;
    io_scope(session::impl& s, bytes* in, buffer_chain* out) noexcept : p(s) {
        p.in = in;
        p.out = out;
    }
    ~io_scope() {
        p.in = nullptr;
        p.out = nullptr;
    }
};

const char* alert_text(int code) noexcept {
    switch (code) {
    case 0: return "peer sent alert close_notify during the handshake";
    case 10: return "peer sent alert unexpected_message";
    case 20: return "peer sent alert bad_record_mac";
    case 22: return "peer sent alert record_overflow";
    case 40: return "peer sent alert handshake_failure (no common parameters)";
    case 42: return "peer sent alert bad_certificate (it rejected our certificate)";
    case 43: return "peer sent alert unsupported_certificate";
    case 44: return "peer sent alert certificate_revoked";
    case 45: return "peer sent alert certificate_expired";
    case 46: return "peer sent alert certificate_unknown (it rejected our certificate)";
    case 47: return "peer sent alert illegal_parameter";
    case 48: return "peer sent alert unknown_ca (it does not trust our certificate's issuer)";
    case 49: return "peer sent alert access_denied";
    case 50: return "peer sent alert decode_error";
    case 51: return "peer sent alert decrypt_error";
    case 70: return "peer sent alert protocol_version (no common TLS version)";
    case 71: return "peer sent alert insufficient_security";
    case 80: return "peer sent alert internal_error";
    case 86: return "peer sent alert inappropriate_fallback";
    case 90: return "peer sent alert user_canceled";
    case 109: return "peer sent alert missing_extension";
    case 110: return "peer sent alert unsupported_extension";
    case 112: return "peer sent alert unrecognized_name (SNI)";
    case 116: return "peer sent alert certificate_required";
    case 120: return "peer sent alert no_application_protocol (ALPN)";
    default: return "peer sent a fatal alert";
    }
}

// wolfSSL's error code -> our error. Certificate checks become errc::tls_verify with the
// reason; everything before the handshake completes is tls_handshake, later tls_protocol.
error classify(session::impl& p, int e) noexcept {
    const errc stage = p.hs_done ? errc::tls_protocol : errc::tls_handshake;
    switch (e) {
    case ASN_NO_SIGNER_E:
        return {errc::tls_verify, "certificate verify failed: unknown CA (no trusted CA signed it)"};
    case ASN_SELF_SIGNED_E:
        return {errc::tls_verify, "certificate verify failed: self-signed certificate not trusted"};
    case ASN_AFTER_DATE_E: return {errc::tls_verify, "certificate verify failed: certificate expired"};
    case ASN_BEFORE_DATE_E: return {errc::tls_verify, "certificate verify failed: certificate not yet valid"};
    case DOMAIN_NAME_MISMATCH:
        return {errc::tls_verify, "certificate verify failed: host name mismatch (not in the certificate)"};
    case IPADDR_MISMATCH:
        return {errc::tls_verify, "certificate verify failed: IP address mismatch (not in the certificate)"};
    case ASN_SIG_CONFIRM_E:
    case ASN_SIG_OID_E:
    case ASN_SIG_HASH_E:
    case ASN_SIG_KEY_E:
        return {errc::tls_verify, "certificate verify failed: bad certificate signature"};
    case ASN_PATHLEN_INV_E:
    case ASN_PATHLEN_SIZE_E:
        return {errc::tls_verify, "certificate verify failed: CA path length constraint violated"};
    case ASN_NO_KEYUSAGE:
    case KEYUSE_SIGNATURE_E:
    case EXTKEYUSAGE_E:
        return {errc::tls_verify, "certificate verify failed: key usage does not allow TLS server use"};
    case VERIFY_CERT_ERROR: return {errc::tls_verify, "certificate verify failed"};
    case NO_PEER_CERT: return {errc::tls_verify, "certificate verify failed: the peer sent no certificate"};
    case FATAL_ERROR: {
        WOLFSSL_ALERT_HISTORY h{};
        wolfSSL_get_alert_history(p.ssl, &h);
        return {stage, alert_text(h.last_rx.code)};
    }
    case UNKNOWN_ALPN_PROTOCOL_NAME_E:
        return {errc::tls_handshake, "no common ALPN protocol (the client offered none of ours)"};
    case MATCH_SUITE_ERROR:
    case UNSUPPORTED_SUITE:
        return {errc::tls_handshake, "no common cipher suite"};
    case VERSION_ERROR: return {errc::tls_handshake, "no common TLS version (or a bad record version)"};
    case VERIFY_MAC_ERROR:
    case DECRYPT_ERROR:
    case AES_GCM_AUTH_E:
    case MAC_CMP_FAILED_E:
        return {stage, "record authentication failed (corrupted or tampered data)"};
    case UNKNOWN_RECORD_TYPE: return {stage, "not a TLS record (unknown record type)"};
    case LENGTH_ERROR:
        return {stage, "record length invalid or too large"};
    case BUFFER_ERROR:
    case INCOMPLETE_DATA:
    case BUFFER_E:
        return {stage, "malformed TLS message"};
    case SANITY_MSG_E:
    case OUT_OF_ORDER_E:
    case DUPLICATE_MSG_E:
        return {stage, "unexpected TLS message (out of order)"};
    case MEMORY_ERROR:
    case MEMORY_E:
        return {errc::out_of_memory, "TLS: out of memory"};
    default:
        break;
    }
    // Static strings from wolfSSL's table: never peer data.
    return {stage, wolfSSL_ERR_reason_error_string(static_cast<unsigned long>(e))};
}

result<event> fail_session(session::impl& p, int wolf_err) noexcept {
    p.failed = true;
    p.err = classify(p, wolf_err);
    p.drop_block();
    return fail(p.err);
}

// wolfSSL asked for more input although the call still holds some: never expected (io_recv
// hands over all it is asked for), but reporting need_more would lose those bytes. Fail closed.
result<event> stalled(session::impl& p) noexcept {
    FERRY_BUG(true, "TLS: wolfSSL wants input while input is left");
    p.failed = true;
    p.err = error(p.hs_done ? errc::tls_protocol : errc::tls_handshake, "TLS: stalled with unread input");
    p.drop_block();
    return fail(p.err);
}

// Our form of an IP literal as wolfSSL prints IP SANs (asn.c: dotted quad, or eight groups of
// four upper-case hex digits), so that the name check compares like with like. false: not an IP.
bool ip_literal_as_san(const std::string& name, std::string& out) {
    unsigned char a[16];
    char buf[48];
    if (inet_pton(AF_INET, name.c_str(), a) == 1) {
        std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        out = buf;
        return true;
    }
    if (inet_pton(AF_INET6, name.c_str(), a) == 1) {
        int k = 0;
        for (int i = 0; i < 8; ++i)
            k += std::snprintf(buf + k, sizeof buf - static_cast<std::size_t>(k), "%02X%02X%s", a[2 * i], a[2 * i + 1],
                               i < 7 ? ":" : "");
        out.assign(buf, static_cast<std::size_t>(k));
        return true;
    }
    return false;
}

bool valid_limits(const limits& l) noexcept {
    return l.plaintext_block >= max_record_plain + 256 && l.plaintext_block <= (1u << 20);
}

}  // namespace

// ---- IO callbacks ------------------------------------------------------------------------------

namespace detail {

int io_recv(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* p = static_cast<session::impl*>(ctx);
    if (!p || !p->in || p->in->empty() || sz <= 0) return WOLFSSL_CBIO_ERR_WANT_READ;
    std::size_t n = std::min(p->in->size(), static_cast<std::size_t>(sz));
    std::memcpy(buf, p->in->data(), n);
    *p->in = p->in->subspan(n);
    return static_cast<int>(n);
}

int io_send(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* p = static_cast<session::impl*>(ctx);
    if (!p || !p->out) return WOLFSSL_CBIO_ERR_GENERAL;  // no call in progress: nothing may be sent
    if (sz <= 0) return 0;
    const auto n = static_cast<std::size_t>(sz);
    if (n < large_record) {
        p->out->append_copy(bytes(reinterpret_cast<const std::byte*>(buf), n));  // packed into the tail
        return sz;
    }
    // A large record gets its own block, placed so that destination and source share their
    // offset within a cache line: glibc's `rep movsb` copy (2.36) runs ~30x slower on AMD Zen
    // when (dst - src) mod 4096 falls in [1, 31] (4K aliasing), which two unrelated heap
    // buffers hit often (docs/wolfssl.md). Linked, not copied again, by the chain.
    block* b = block::make(n + 64);
    std::size_t off = (reinterpret_cast<std::uintptr_t>(buf) - reinterpret_cast<std::uintptr_t>(b->data())) & 63;
    std::memcpy(b->data() + off, buf, n);
    b->used = static_cast<std::uint32_t>(off + n);
    p->out->append(slice(b, b->data() + off, n));
    b->unref();  // the chain's slice holds it
    return sz;
}

}  // namespace detail

// ---- construction ------------------------------------------------------------------------------

session::session(std::unique_ptr<impl> p) noexcept : p_(std::move(p)) {}
session::session(session&&) noexcept = default;
session& session::operator=(session&&) noexcept = default;
session::~session() = default;

result<session> session::server(std::shared_ptr<const server_context> ctx, const limits& lim) {
    if (!ctx) return fail(errc::invalid_argument, "TLS: no server context");
    if (!valid_limits(lim)) return fail(errc::invalid_argument, "TLS: plaintext_block out of [16640, 1 MiB]");
    auto p = std::make_unique<impl>();
    p->side = role::server;
    p->lim = lim;
    p->ssl = wolfSSL_new(ctx->native());
    if (!p->ssl) return fail(errc::out_of_memory, "TLS: wolfSSL_new failed");
    wolfSSL_SetIOReadCtx(p->ssl, p.get());
    wolfSSL_SetIOWriteCtx(p->ssl, p.get());
    const std::string& alpn = ctx->alpn_csv();
    if (!alpn.empty()) {
        unsigned char opt = ctx->options().on_alpn_mismatch == alpn_mismatch::refuse
                                ? WOLFSSL_ALPN_FAILED_ON_MISMATCH
                                : WOLFSSL_ALPN_CONTINUE_ON_MISMATCH;
        // wolfSSL_UseALPN takes a mutable buffer but does not write to it.
        std::string list = alpn;
        if (wolfSSL_UseALPN(p->ssl, list.data(), static_cast<unsigned>(list.size()), opt) != WOLFSSL_SUCCESS)
            return fail(errc::crypto, "TLS: cannot set ALPN");
    }
    p->ctx_owner = std::move(ctx);
    return session(std::move(p));
}

result<session> session::client(std::shared_ptr<const client_context> ctx, std::string_view server_name,
                                std::shared_ptr<const resumption> resume, const limits& lim) {
    if (!ctx) return fail(errc::invalid_argument, "TLS: no client context");
    if (!valid_limits(lim)) return fail(errc::invalid_argument, "TLS: plaintext_block out of [16640, 1 MiB]");
    if (server_name.size() > 253 || server_name.find('\0') != std::string_view::npos)
        return fail(errc::invalid_argument, "TLS: invalid server name");
    const bool verify = ctx->options().verify == verify_mode::verify;
    if (verify && server_name.empty())
        return fail(errc::invalid_argument, "TLS: a server name is needed to verify the certificate");
    auto p = std::make_unique<impl>();
    p->side = role::client;
    p->lim = lim;
    p->name.assign(server_name);
    p->ssl = wolfSSL_new(ctx->native());
    if (!p->ssl) return fail(errc::out_of_memory, "TLS: wolfSSL_new failed");
    wolfSSL_SetIOReadCtx(p->ssl, p.get());
    wolfSSL_SetIOWriteCtx(p->ssl, p.get());

    std::string ip;
    const bool is_ip = ip_literal_as_san(p->name, ip);
    if (!is_ip && !p->name.empty() &&
        wolfSSL_UseSNI(p->ssl, WOLFSSL_SNI_HOST_NAME, p->name.data(), static_cast<unsigned short>(p->name.size())) !=
            WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: cannot set SNI");
    if (verify && wolfSSL_check_domain_name(p->ssl, is_ip ? ip.c_str() : p->name.c_str()) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: cannot set the name to verify");
    const std::string& alpn = ctx->alpn_csv();
    if (!alpn.empty()) {
        std::string list = alpn;
        if (wolfSSL_UseALPN(p->ssl, list.data(), static_cast<unsigned>(list.size()),
                            WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
            return fail(errc::crypto, "TLS: cannot set ALPN");
    }
    // A stale or foreign ticket is not an error: the handshake is then a full one.
    if (resume) (void)wolfSSL_set_session(p->ssl, resume->native());
    p->ctx_owner = std::move(ctx);
    return session(std::move(p));
}

// ---- operation ---------------------------------------------------------------------------------

status session::start(buffer_chain& out) noexcept {
    impl& p = *p_;
    if (p.failed) return fail(p.err);
    if (p.started || p.side == role::server) {
        p.started = true;
        return {};
    }
    p.started = true;
    io_scope io(p, nullptr, &out);
    int r = wolfSSL_connect(p.ssl);  // writes the ClientHello, then wants to read
    if (r == WOLFSSL_SUCCESS) return {};
    int e = wolfSSL_get_error(p.ssl, r);
    if (e == WOLFSSL_ERROR_WANT_READ) return {};
    auto f = fail_session(p, e);
    return fail(f.err());
}

result<event> session::next(bytes& in, buffer_chain& out) noexcept {
    impl& p = *p_;
    if (p.failed) return fail(p.err);
    if (p.peer_closed) {
        in = {};  // nothing may follow close_notify; ignored (and wolfSSL may be cleared)
        return event{};
    }
    io_scope io(p, &in, &out);

    if (!p.hs_done) {
        if (p.side == role::server && !p.first_checked && !in.empty()) {
            // A ClientHello starts with a handshake record. Anything else is not TLS; a plain
            // HTTP request ("GET /...") gets a specific message, and no alert (it would not
            // understand one).
            p.first_checked = true;
            auto b0 = std::to_integer<std::uint8_t>(in[0]);
            if (b0 != record_type_handshake) {
                p.failed = true;
                // HTTP: a method token (1-7 upper-case letters) and a space, as far as this
                // first receive shows it. One capital letter alone is not enough: random bytes
                // start with one about 1 time in 10 and must not get a plaintext answer.
                std::size_t n = 0;
                while (n < in.size() && n < 8) {
                    const auto c = std::to_integer<std::uint8_t>(in[n]);
                    if (c < 'A' || c > 'Z') break;
                    ++n;
                }
                p.plaintext_http = n >= 1 && n <= 7 && n < in.size() && in[n] == std::byte{' '};
                p.err = p.plaintext_http
                            ? error(errc::tls_handshake, "plain HTTP received on a TLS port (use https:// or wss://)")
                            : error(errc::tls_handshake, "not TLS: the first record is not a handshake");
                return fail(p.err);
            }
        }
        p.started = true;
        int r = p.side == role::server ? wolfSSL_accept(p.ssl) : wolfSSL_connect(p.ssl);
        if (r == WOLFSSL_SUCCESS) {
            p.hs_done = true;
            char* proto = nullptr;
            unsigned short len = 0;
            if (wolfSSL_ALPN_GetProtocol(p.ssl, &proto, &len) == WOLFSSL_SUCCESS && proto) p.alpn.assign(proto, len);
            if (p.side == role::server) {
                const char* sni = wolfSSL_get_servername(p.ssl, WOLFSSL_SNI_HOST_NAME);
                if (sni) p.name = sni;
            }
            return event{event_type::handshake_done, {}};
        }
        int e = wolfSSL_get_error(p.ssl, r);
        if (e == WOLFSSL_ERROR_WANT_READ) {
            if (!in.empty()) return stalled(p);
            return event{};
        }
        return fail_session(p, e);
    }

    // Application data: decrypt into the current block, whole records only.
    if (!p.blk || p.blk->capacity - p.blk->used < max_record_plain) {
        p.drop_block();
        p.blk = block::make(p.lim.plaintext_block);
    }
    std::byte* dst = p.blk->data() + p.blk->used;
    int room = static_cast<int>(p.blk->capacity - p.blk->used);
    int r = wolfSSL_read(p.ssl, dst, room);
    if (r > 0) {
        p.blk->used += static_cast<std::uint32_t>(r);
        return event{event_type::data, slice(p.blk, dst, static_cast<std::size_t>(r))};
    }
    int e = wolfSSL_get_error(p.ssl, r);
    if (e == WOLFSSL_ERROR_WANT_READ) {
        if (!in.empty()) return stalled(p);
        // Idle sessions hold no plaintext block: slices handed out keep theirs alive.
        p.drop_block();
        return event{};
    }
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
        p.peer_closed = true;
        p.drop_block();
        in = {};
        return event{event_type::peer_closed, {}};
    }
    return fail_session(p, e);
}

status session::write(bytes plain, buffer_chain& out) noexcept {
    impl& p = *p_;
    if (p.failed) return fail(p.err);
    if (!p.hs_done) return fail(errc::invalid_argument, "TLS: write before the handshake finished");
    if (p.sent_close) return fail(errc::closed, "TLS: write after close_notify");
    io_scope io(p, nullptr, &out);
    while (!plain.empty()) {
        // wolfSSL_write takes an int; it cuts records itself and sends each through io_send.
        int n = static_cast<int>(std::min<std::size_t>(plain.size(), std::size_t(1) << 30));
        int r = wolfSSL_write(p.ssl, plain.data(), n);
        if (r <= 0) {
            auto f = fail_session(p, wolfSSL_get_error(p.ssl, r));
            return fail(f.err());
        }
        plain = plain.subspan(static_cast<std::size_t>(r));
    }
    return {};
}

status session::write(buffer_chain& plain, buffer_chain& out) noexcept {
    // Fragments of a full record or more are sealed from where they are; smaller ones are
    // gathered so that a header + payload pair, or many small messages, make one record
    // instead of one record each.
    std::byte stage[max_record_plain];
    while (!plain.empty()) {
        const slice& f = plain.front();
        if (f.size() >= max_record_plain) {
            std::size_t n = f.size() - f.size() % max_record_plain;
            FERRY_TRY(w, write(bytes(f.data(), n), out));
            plain.consume(n);
            continue;
        }
        std::size_t n = std::min(plain.size(), max_record_plain);
        plain.peek(mut_bytes(stage, n));
        FERRY_TRY(w, write(bytes(stage, n), out));
        plain.consume(n);
    }
    return {};
}

status session::close_notify(buffer_chain& out) noexcept {
    impl& p = *p_;
    if (p.failed || !p.hs_done || p.sent_close) return {};
    p.sent_close = true;
    io_scope io(p, nullptr, &out);
    // Non-blocking: sends the alert and returns SHUTDOWN_NOT_DONE until the peer's arrives; we
    // never call it twice (half-close). When the peer's close_notify came first, wolfSSL
    // resets the WOLFSSL for reuse: next() no longer touches it once peer_closed is set.
    int r = wolfSSL_shutdown(p.ssl);
    if (r == WOLFSSL_FATAL_ERROR) {
        p.failed = true;
        p.err = error(errc::tls_protocol, "TLS: cannot send close_notify");
        return fail(p.err);
    }
    return {};
}

// ---- queries -----------------------------------------------------------------------------------

role session::side() const noexcept { return p_->side; }
bool session::handshake_done() const noexcept { return p_->hs_done; }
bool session::peer_closed() const noexcept { return p_->peer_closed; }
bool session::failed() const noexcept { return p_->failed; }
bool session::plaintext_http() const noexcept { return p_->plaintext_http; }
std::string_view session::alpn() const noexcept { return p_->alpn; }
std::string_view session::server_name() const noexcept { return p_->name; }

std::string_view session::version_name() const noexcept {
    if (!p_->hs_done) return {};
    const char* v = wolfSSL_get_version(p_->ssl);
    return v ? v : "";
}

std::string_view session::cipher_name() const noexcept {
    if (!p_->hs_done) return {};
    const char* c = wolfSSL_get_cipher_name(p_->ssl);
    return c ? c : "";
}

std::string_view session::group_name() const noexcept {
    if (!p_->hs_done) return {};
    const char* g = wolfSSL_get_curve_name(p_->ssl);
    return g ? g : "";
}

bool session::resumed() const noexcept { return p_->hs_done && wolfSSL_session_reused(p_->ssl) == 1; }

std::shared_ptr<const resumption> session::resumption_ticket() const {
    const impl& p = *p_;
    if (p.side != role::client || !p.hs_done || p.failed || p.sent_close || p.peer_closed) return {};
    WOLFSSL_SESSION* cur = wolfSSL_get_session(p.ssl);
    if (!cur || wolfSSL_SESSION_has_ticket(cur) != 1) return {};
    // A copy: the live session keeps changing (later tickets) and belongs to this thread.
    WOLFSSL_SESSION* copy = wolfSSL_SESSION_dup(cur);
    if (!copy) return {};
    return std::make_shared<const resumption>(copy);
}

}  // namespace ferry::tls
