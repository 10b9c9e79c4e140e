#pragma once
// Internal to src/proto/tls: the memory IO callbacks (session.cc) that contexts install.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

namespace ferry::tls::detail {

// wolfSSL asks for ciphertext: copied from the span the current session::next() call holds.
// WOLFSSL_CBIO_ERR_WANT_READ when it is used up (the session then reports need_more).
int io_recv(WOLFSSL* ssl, char* buf, int sz, void* ctx);
// wolfSSL hands over finished records: appended to the caller's buffer_chain of the current
// call. Never WANT_WRITE: output is unbounded here; backpressure is the caller's watermark.
int io_send(WOLFSSL* ssl, char* buf, int sz, void* ctx);

// TLS 1.3 suites first (AES-256-GCM preferred: AES-NI), then TLS 1.2 ECDHE AEAD suites for
// contexts that allow 1.2. No CBC, no RSA key exchange, no anonymous suites (wolfSSL's
// OpenSSL-compatible defaults would allow those: OPENSSL_COMPATIBLE_DEFAULTS is on in this build).
inline constexpr const char* cipher_list =
    "TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

}  // namespace ferry::tls::detail
