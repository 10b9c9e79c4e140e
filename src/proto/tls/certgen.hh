#pragma once
// Development certificates with wolfCrypt's certificate generation (the optimised build has
// WOLFSSL_CERT_GEN, WOLFSSL_CERT_EXT, WOLFSSL_ALT_NAMES and WOLFSSL_KEY_GEN): an ECDSA P-256 key
// and an X.509 v3 certificate, self-signed or signed by a given issuer, as PEM.
//
// Used by `ferry-certgen` (scripts/demo: a self-signed certificate in the data dir when none is
// configured) and by the TLS tests (CAs, leaves, expired and wrong-name certificates).
// Start-up code: allocates freely. The caller passes the current time (no clock reads here).
#include <chrono>
#include <string>
#include <vector>

#include "proto/base/result.hh"

namespace ferry::tls {

struct cert_options {
    std::string common_name = "ferry development certificate";
    // Subject alternative names: what clients check the host name against.
    std::vector<std::string> dns_names{"localhost"};
    std::vector<std::string> ip_addresses{"127.0.0.1", "::1"};
    // Valid from `now - backdate` (clock skew) to `now + validity`.
    std::chrono::seconds validity{std::chrono::hours(24 * 365)};
    std::chrono::seconds backdate{std::chrono::hours(1)};
    // A CA certificate (basicConstraints CA:TRUE, keyCertSign) instead of a server leaf.
    bool is_ca = false;
    // Empty: self-signed. Else the PEM certificate and key of the CA that signs this one.
    std::string issuer_cert_pem;
    std::string issuer_key_pem;
};

struct certificate {
    std::string cert_pem;  // "-----BEGIN CERTIFICATE-----"
    std::string key_pem;   // "-----BEGIN EC PRIVATE KEY-----" (SEC 1; keep it mode 0600)
};

// errc::invalid_argument for bad names or addresses, errc::crypto when wolfCrypt fails.
result<certificate> generate_certificate(const cert_options& o, std::chrono::system_clock::time_point now);

}  // namespace ferry::tls
