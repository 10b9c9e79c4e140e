#include "proto/tls/certgen.hh"

#include <arpa/inet.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

namespace ferry::tls {

namespace {

// DER length octets (X.690 section 8.1.3).
void der_length(std::string& out, std::size_t n) {
    if (n < 0x80) {
        out += static_cast<char>(n);
    } else if (n <= 0xff) {
        out += static_cast<char>(0x81);
        out += static_cast<char>(n);
    } else {
        out += static_cast<char>(0x82);
        out += static_cast<char>(n >> 8);
        out += static_cast<char>(n & 0xff);
    }
}

void der_tlv(std::string& out, unsigned char tag, std::string_view value) {
    out += static_cast<char>(tag);
    der_length(out, value.size());
    out.append(value);
}

// GeneralNames (RFC 5280 section 4.2.1.6): what wolfCrypt expects in Cert::altNames.
result<std::string> encode_alt_names(const cert_options& o) {
    std::string names;
    for (const std::string& d : o.dns_names) {
        if (d.empty() || d.size() > 253) return fail(errc::invalid_argument, "certgen: bad DNS name");
        for (char c : d)
            if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
                return fail(errc::invalid_argument, "certgen: DNS names are printable ASCII");
        der_tlv(names, 0x82, d);  // [2] IA5String dNSName
    }
    for (const std::string& ip : o.ip_addresses) {
        unsigned char a[16];
        if (inet_pton(AF_INET, ip.c_str(), a) == 1) {
            der_tlv(names, 0x87, std::string_view(reinterpret_cast<char*>(a), 4));  // [7] iPAddress
        } else if (inet_pton(AF_INET6, ip.c_str(), a) == 1) {
            der_tlv(names, 0x87, std::string_view(reinterpret_cast<char*>(a), 16));
        } else {
            return fail(errc::invalid_argument, "certgen: bad IP address");
        }
    }
    std::string seq;
    if (!names.empty()) der_tlv(seq, 0x30, names);
    return seq;
}

// UTCTime through 2049, GeneralizedTime after (RFC 5280 section 4.1.2.5), tag and length included.
int encode_time(std::chrono::system_clock::time_point t, unsigned char* out) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    if (!gmtime_r(&tt, &tm)) return -1;
    char buf[20];
    int year = tm.tm_year + 1900;
    int n;
    if (year >= 1950 && year < 2050) {
        out[0] = 0x17;
        n = std::snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1, tm.tm_mday,
                          tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else {
        out[0] = 0x18;
        n = std::snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                          tm.tm_min, tm.tm_sec);
    }
    if (n <= 0 || n >= static_cast<int>(sizeof buf)) return -1;
    out[1] = static_cast<unsigned char>(n);
    std::memcpy(out + 2, buf, static_cast<std::size_t>(n));
    return n + 2;
}

// RAII for the wolfCrypt objects used below.
struct rng_guard {
    WC_RNG rng;
    bool ok = false;
    rng_guard() { ok = wc_InitRng(&rng) == 0; }
    ~rng_guard() {
        if (ok) wc_FreeRng(&rng);
    }
};
struct ecc_guard {
    ecc_key key;
    bool ok = false;
    ecc_guard() { ok = wc_ecc_init(&key) == 0; }
    ~ecc_guard() {
        if (ok) wc_ecc_free(&key);
    }
};

result<std::string> der_to_pem(const unsigned char* der, int der_len, int type) {
    int need = wc_DerToPem(der, static_cast<word32>(der_len), nullptr, 0, type);
    if (need <= 0) return fail(errc::crypto, "certgen: PEM encoding failed");
    std::string pem(static_cast<std::size_t>(need), '\0');
    int n = wc_DerToPem(der, static_cast<word32>(der_len), reinterpret_cast<byte*>(pem.data()),
                        static_cast<word32>(pem.size()), type);
    if (n <= 0) return fail(errc::crypto, "certgen: PEM encoding failed");
    pem.resize(static_cast<std::size_t>(n));
    return pem;
}

}  // namespace

result<certificate> generate_certificate(const cert_options& o, std::chrono::system_clock::time_point now) {
    if (o.common_name.empty() || o.common_name.size() >= CTC_NAME_SIZE)
        return fail(errc::invalid_argument, "certgen: common name must be 1..63 bytes");
    if (o.validity <= std::chrono::seconds(0)) return fail(errc::invalid_argument, "certgen: validity must be positive");
    if (o.issuer_cert_pem.empty() != o.issuer_key_pem.empty())
        return fail(errc::invalid_argument, "certgen: an issuer needs both its certificate and its key");
    FERRY_TRY(alt, encode_alt_names(o));
    if (alt->size() > CTC_MAX_ALT_SIZE) return fail(errc::invalid_argument, "certgen: too many alternative names");

    rng_guard rng;
    ecc_guard key;
    if (!rng.ok || !key.ok) return fail(errc::crypto, "certgen: wolfCrypt initialisation failed");
    if (wc_ecc_make_key_ex(&rng.rng, 32, &key.key, ECC_SECP256R1) != 0)
        return fail(errc::crypto, "certgen: P-256 key generation failed");

    auto cert = std::make_unique<Cert>();  // ~20 KiB: not on the stack
    if (wc_InitCert(cert.get()) != 0) return fail(errc::crypto, "certgen: wc_InitCert failed");
    std::strncpy(cert->subject.commonName, o.common_name.c_str(), CTC_NAME_SIZE - 1);
    std::strncpy(cert->subject.org, "ferry", CTC_NAME_SIZE - 1);
    cert->sigType = CTC_SHA256wECDSA;
    cert->isCA = o.is_ca ? 1 : 0;
    cert->basicConstSet = 1;  // CA:FALSE written explicitly for leaves
    // Serial: 16 random bytes, positive (RFC 5280 section 4.1.2.2).
    if (wc_RNG_GenerateBlock(&rng.rng, cert->serial, 16) != 0) return fail(errc::crypto, "certgen: RNG failed");
    cert->serial[0] = static_cast<byte>((cert->serial[0] & 0x7f) | 0x01);
    cert->serialSz = 16;
    int b = encode_time(now - o.backdate, cert->beforeDate);
    int a = encode_time(now + o.validity, cert->afterDate);
    if (b <= 0 || a <= 0) return fail(errc::invalid_argument, "certgen: validity dates out of range");
    cert->beforeDateSz = b;
    cert->afterDateSz = a;
    if (!alt->empty()) {
        std::memcpy(cert->altNames, alt->data(), alt->size());
        cert->altNamesSz = static_cast<int>(alt->size());
    }
    if (wc_SetKeyUsage(cert.get(), o.is_ca ? "keyCertSign,cRLSign,digitalSignature" : "digitalSignature") != 0)
        return fail(errc::crypto, "certgen: key usage");
    if (!o.is_ca && wc_SetExtKeyUsage(cert.get(), "serverAuth,clientAuth") != 0)
        return fail(errc::crypto, "certgen: extended key usage");
    if (wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, &key.key) != 0)
        return fail(errc::crypto, "certgen: subject key identifier");

    // The signer: our own key (self-signed) or the issuer's.
    ecc_guard issuer_key;
    ecc_key* signer = &key.key;
    if (!o.issuer_cert_pem.empty()) {
        std::string der(o.issuer_cert_pem.size(), '\0');
        int n = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(o.issuer_cert_pem.data()),
                                static_cast<int>(o.issuer_cert_pem.size()), reinterpret_cast<byte*>(der.data()),
                                static_cast<int>(der.size()), CERT_TYPE);
        if (n <= 0) return fail(errc::invalid_argument, "certgen: issuer certificate is not PEM");
        if (wc_SetIssuerBuffer(cert.get(), reinterpret_cast<const byte*>(der.data()), n) != 0 ||
            wc_SetAuthKeyIdFromCert(cert.get(), reinterpret_cast<const byte*>(der.data()), n) != 0)
            return fail(errc::invalid_argument, "certgen: issuer certificate unusable");
        std::string kder(o.issuer_key_pem.size(), '\0');
        int kn = wc_KeyPemToDer(reinterpret_cast<const unsigned char*>(o.issuer_key_pem.data()),
                                static_cast<int>(o.issuer_key_pem.size()), reinterpret_cast<byte*>(kder.data()),
                                static_cast<int>(kder.size()), nullptr);
        word32 idx = 0;
        if (kn <= 0 || !issuer_key.ok ||
            wc_EccPrivateKeyDecode(reinterpret_cast<const byte*>(kder.data()), &idx, &issuer_key.key,
                                   static_cast<word32>(kn)) != 0)
            return fail(errc::invalid_argument, "certgen: issuer key is not a PEM EC private key");
        signer = &issuer_key.key;
    } else if (wc_SetAuthKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, &key.key) != 0) {
        return fail(errc::crypto, "certgen: authority key identifier");
    }

    std::string der(8192, '\0');
    auto* dp = reinterpret_cast<byte*>(der.data());
    if (wc_MakeCert_ex(cert.get(), dp, static_cast<word32>(der.size()), ECC_TYPE, &key.key, &rng.rng) <= 0)
        return fail(errc::crypto, "certgen: wc_MakeCert failed");
    int sz = wc_SignCert_ex(cert->bodySz, cert->sigType, dp, static_cast<word32>(der.size()), ECC_TYPE, signer,
                            &rng.rng);
    if (sz <= 0) return fail(errc::crypto, "certgen: signing failed");

    certificate out;
    FERRY_TRY(cp, der_to_pem(dp, sz, CERT_TYPE));
    out.cert_pem = std::move(*cp);
    unsigned char kder[256];
    int kn = wc_EccKeyToDer(&key.key, kder, sizeof kder);
    if (kn <= 0) return fail(errc::crypto, "certgen: key encoding failed");
    auto kp = der_to_pem(kder, kn, ECC_PRIVATEKEY_TYPE);
    std::memset(kder, 0, sizeof kder);
    if (!kp) return fail(kp.err());
    out.key_pem = std::move(*kp);
    return out;
}

}  // namespace ferry::tls
