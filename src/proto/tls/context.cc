#include "proto/tls/context.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/random.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "proto/tls/detail.hh"

namespace ferry::tls {

namespace detail {

bool library_init() noexcept {
    static std::once_flag once;
    static bool ok = false;
    std::call_once(once, [] { ok = wolfSSL_Init() == WOLFSSL_SUCCESS; });
    return ok;
}

int read_file(const std::string& path, std::string& out) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return errno ? errno : EIO;
    out.clear();
    char buf[16384];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
        if (out.size() > (64u << 20)) {  // a PEM bundle is a few hundred KiB at most
            std::fclose(f);
            return EFBIG;
        }
    }
    int err = std::ferror(f) ? EIO : 0;
    std::fclose(f);
    return err;
}

}  // namespace detail

namespace {

// Seals and opens session tickets with AES-256-GCM under the context's fixed key (see
// context.hh for why wolfSSL's default callback is not used). Runs on the shard of the session
// being resumed or issued; reads only the immutable key and uses the session's own RNG.
// AAD = key name | IV | ticket length, as wolfSSL's own callback does.
int ticket_cb(WOLFSSL* ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
              unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
              unsigned char* ticket, int in_len, int* out_len, void* user) {
    const auto* keys = static_cast<const server_context::ticket_keys*>(user);
    static_assert(sizeof keys->name == WOLFSSL_TICKET_NAME_SZ);
    constexpr int nonce_len = 12;  // GCM's native nonce; the rest of the 16-byte IV is random too
    constexpr int tag_len = 16;    // of the 32-byte MAC field; the rest is zero
    if (in_len < 0 || !out_len) return WOLFSSL_TICKET_RET_REJECT;
    if (enc) {
        std::memcpy(key_name, keys->name, WOLFSSL_TICKET_NAME_SZ);
        WC_RNG* rng = wolfSSL_GetRNG(ssl);
        if (!rng || wc_RNG_GenerateBlock(rng, iv, WOLFSSL_TICKET_IV_SZ) != 0) return WOLFSSL_TICKET_RET_REJECT;
    } else if (std::memcmp(key_name, keys->name, WOLFSSL_TICKET_NAME_SZ) != 0) {
        return WOLFSSL_TICKET_RET_REJECT;  // another context's ticket: full handshake
    }
    unsigned char aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2];
    std::memcpy(aad, keys->name, WOLFSSL_TICKET_NAME_SZ);
    std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    aad[sizeof aad - 2] = static_cast<unsigned char>(in_len >> 8);
    aad[sizeof aad - 1] = static_cast<unsigned char>(in_len);

    Aes aes;
    if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0) return WOLFSSL_TICKET_RET_REJECT;
    int r = wc_AesGcmSetKey(&aes, keys->key, sizeof keys->key);
    if (r == 0) {
        if (enc) {
            r = wc_AesGcmEncrypt(&aes, ticket, ticket, static_cast<word32>(in_len), iv, nonce_len, mac, tag_len,
                                 aad, sizeof aad);
            std::memset(mac + tag_len, 0, WOLFSSL_TICKET_MAC_SZ - tag_len);
        } else {
            r = wc_AesGcmDecrypt(&aes, ticket, ticket, static_cast<word32>(in_len), iv, nonce_len, mac, tag_len,
                                 aad, sizeof aad);
        }
    }
    wc_AesFree(&aes);
    if (r != 0) return WOLFSSL_TICKET_RET_REJECT;
    *out_len = in_len;
    // TLS 1.2 asks for a fresh ticket after each resumption; TLS 1.3 issues its own.
    if (!enc && wolfSSL_version(ssl) < TLS1_3_VERSION) return WOLFSSL_TICKET_RET_CREATE;
    return WOLFSSL_TICKET_RET_OK;
}

status check_alpn(const std::vector<std::string>& list, std::string& csv) {
    csv.clear();
    for (const std::string& p : list) {
        if (p.empty() || p.size() > 255) return fail(errc::invalid_argument, "ALPN protocol names are 1..255 bytes");
        if (p.find(',') != std::string::npos)
            return fail(errc::invalid_argument, "ALPN protocol names must not contain ','");
        if (!csv.empty()) csv += ',';
        csv += p;
    }
    return {};
}

// Settings both roles share: protocol floor, suites, IO callbacks, no session cache.
status common_setup(WOLFSSL_CTX* ctx, version min, version max) {
    if (max < min) return fail(errc::invalid_argument, "TLS: max_version is below min_version");
    auto wire = [](version v) { return v == version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; };
    if (wolfSSL_CTX_set_min_proto_version(ctx, wire(min)) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_max_proto_version(ctx, wire(max)) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: cannot set the protocol versions");
    if (wolfSSL_CTX_set_cipher_list(ctx, detail::cipher_list) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: cipher suites not available in this wolfSSL build");
    // Key exchange groups in preference order: X25519 first (what browsers and OpenSSL send a
    // key share for, and cheaper here than P-256), then the NIST curves.
    int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
    if (wolfSSL_CTX_set_groups(ctx, groups, static_cast<int>(sizeof groups / sizeof groups[0])) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: key exchange groups not available in this wolfSSL build");
    wolfSSL_CTX_SetIORecv(ctx, detail::io_recv);
    wolfSSL_CTX_SetIOSend(ctx, detail::io_send);
    // The cache is process-wide shared state; tickets make it unnecessary (context.hh).
    wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    return {};
}

// PEM text from `pem` or else from `file`.
status load_pem(const std::string& pem, const std::string& file, std::string& out, const char* what_missing,
                const char* what_unreadable) {
    if (!pem.empty()) {
        out = pem;
        return {};
    }
    if (file.empty()) return fail(errc::invalid_argument, what_missing);
    int e = detail::read_file(file, out);
    if (e != 0) return fail(error::from_errno(e, what_unreadable));
    return {};
}

}  // namespace

// ---- server ------------------------------------------------------------------------------------

result<std::shared_ptr<const server_context>> server_context::create(const server_options& o) {
    if (!detail::library_init()) return fail(errc::crypto, "TLS: wolfSSL_Init failed");
    if (o.ticket_lifetime < std::chrono::seconds(1) || o.ticket_lifetime > std::chrono::hours(24 * 7))
        return fail(errc::invalid_argument, "TLS: ticket_lifetime must be within [1 s, 7 days]");
    if (!o.ticket_key.empty() && o.ticket_key.size() != 48)
        return fail(errc::invalid_argument, "TLS: ticket_key must be 48 bytes (16 name + 32 key)");
    std::shared_ptr<server_context> c(new server_context());
    c->opt_ = o;
    FERRY_TRY(a, check_alpn(o.alpn, c->alpn_csv_));
    std::string cert, key;
    FERRY_TRY(l1, load_pem(o.cert_pem, o.cert_file, cert, "TLS: no certificate configured (cert_file)",
                           "TLS: cannot read the certificate file"));
    FERRY_TRY(l2, load_pem(o.key_pem, o.key_file, key, "TLS: no private key configured (key_file)",
                           "TLS: cannot read the private key file"));

    c->ctx_ = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (!c->ctx_) return fail(errc::out_of_memory, "TLS: wolfSSL_CTX_new failed");
    FERRY_TRY(s, common_setup(c->ctx_, o.min_version, o.max_version));
    wolfSSL_CTX_set_verify(c->ctx_, WOLFSSL_VERIFY_NONE, nullptr);  // no client certificates

    if (wolfSSL_CTX_use_certificate_chain_buffer_format(c->ctx_, reinterpret_cast<const unsigned char*>(cert.data()),
                                                        static_cast<long>(cert.size()),
                                                        WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: the certificate file holds no usable PEM certificate chain");
    if (wolfSSL_CTX_use_PrivateKey_buffer(c->ctx_, reinterpret_cast<const unsigned char*>(key.data()),
                                          static_cast<long>(key.size()), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: the key file holds no usable PEM private key (encrypted keys are not supported)");
    if (wolfSSL_CTX_check_private_key(c->ctx_) != WOLFSSL_SUCCESS)
        return fail(errc::crypto, "TLS: the private key does not match the certificate");

    if (o.session_tickets) {
        if (o.ticket_key.empty()) {
            WC_RNG rng;
            if (wc_InitRng(&rng) != 0) return fail(errc::crypto, "TLS: RNG initialisation failed");
            int r1 = wc_RNG_GenerateBlock(&rng, c->keys_.name, sizeof c->keys_.name);
            int r2 = wc_RNG_GenerateBlock(&rng, c->keys_.key, sizeof c->keys_.key);
            wc_FreeRng(&rng);
            if (r1 != 0 || r2 != 0) return fail(errc::crypto, "TLS: RNG failed");
        } else {
            std::memcpy(c->keys_.name, o.ticket_key.data(), 16);
            std::memcpy(c->keys_.key, o.ticket_key.data() + 16, 32);
        }
        auto secs = static_cast<unsigned>(o.ticket_lifetime.count());
        // The session timeout bounds the ticket's age when it comes back (tls13.c checks it).
        if (wolfSSL_CTX_set_timeout(c->ctx_, secs) < 0 ||
            wolfSSL_CTX_set_TicketHint(c->ctx_, static_cast<int>(secs)) != WOLFSSL_SUCCESS ||
            wolfSSL_CTX_set_TicketEncCtx(c->ctx_, &c->keys_) != WOLFSSL_SUCCESS ||
            wolfSSL_CTX_set_TicketEncCb(c->ctx_, ticket_cb) != WOLFSSL_SUCCESS)
            return fail(errc::crypto, "TLS: cannot configure session tickets");
    } else {
        wolfSSL_CTX_no_ticket_TLSv13(c->ctx_);
        wolfSSL_CTX_NoTicketTLSv12(c->ctx_);
    }
    return std::shared_ptr<const server_context>(std::move(c));
}

server_context::~server_context() {
    if (ctx_) wolfSSL_CTX_free(ctx_);
    std::memset(&keys_, 0, sizeof keys_);
}

// ---- client ------------------------------------------------------------------------------------

result<std::shared_ptr<const client_context>> client_context::create(const client_options& o) {
    if (!detail::library_init()) return fail(errc::crypto, "TLS: wolfSSL_Init failed");
    std::shared_ptr<client_context> c(new client_context());
    c->opt_ = o;
    FERRY_TRY(a, check_alpn(o.alpn, c->alpn_csv_));

    c->ctx_ = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (!c->ctx_) return fail(errc::out_of_memory, "TLS: wolfSSL_CTX_new failed");
    FERRY_TRY(s, common_setup(c->ctx_, o.min_version, o.max_version));
    wolfSSL_CTX_UseSessionTicket(c->ctx_);  // TLS 1.2 needs asking; TLS 1.3 tickets always work

    if (o.verify == verify_mode::insecure_skip_verify) {
        // wolfSSL's OpenSSL-compatible default is already VERIFY_NONE; said explicitly here.
        wolfSSL_CTX_set_verify(c->ctx_, WOLFSSL_VERIFY_NONE, nullptr);
        return std::shared_ptr<const client_context>(std::move(c));
    }
    wolfSSL_CTX_set_verify(c->ctx_, WOLFSSL_VERIFY_PEER, nullptr);
    std::string pem;
    const bool system = o.ca_pem.empty() && o.ca_file.empty();
    if (system) {
        int e = detail::read_file(o.system_ca_file, pem);
        if (e != 0) return fail(error::from_errno(e, "TLS: cannot read the system CA bundle (install ca-certificates or pass a CA file)"));
        // A distribution bundle may hold certificates this build cannot parse: skip those.
        if (wolfSSL_CTX_load_verify_buffer_ex(c->ctx_, reinterpret_cast<const unsigned char*>(pem.data()),
                                              static_cast<long>(pem.size()), WOLFSSL_FILETYPE_PEM, 0,
                                              WOLFSSL_LOAD_FLAG_IGNORE_ERR) != WOLFSSL_SUCCESS)
            return fail(errc::crypto, "TLS: no usable CA certificate in the system bundle");
    } else {
        FERRY_TRY(l, load_pem(o.ca_pem, o.ca_file, pem, "TLS: no CA configured", "TLS: cannot read the CA file"));
        if (wolfSSL_CTX_load_verify_buffer(c->ctx_, reinterpret_cast<const unsigned char*>(pem.data()),
                                           static_cast<long>(pem.size()), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
            return fail(errc::crypto, "TLS: the CA file holds no usable PEM certificate");
    }
    return std::shared_ptr<const client_context>(std::move(c));
}

client_context::~client_context() {
    if (ctx_) wolfSSL_CTX_free(ctx_);
}

}  // namespace ferry::tls
