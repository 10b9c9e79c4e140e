// src/control/keys: JWT material from files, the SSH host key (persistence, modes, OpenSSH
// format checked against ssh-keygen), development TLS material and secret, atomic writes.
#include "control/keys.hh"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <thread>

#include "helpers.hh"
#include "proto/jwt/jwt.hh"
#include "proto/ssh/hostkey.hh"
#include "proto/tls/context.hh"

using namespace ferry;
using namespace ferry::control;
using namespace ferry::control::test;

namespace {

constexpr std::string_view kEdJwk =
    R"({"kty":"OKP","crv":"Ed25519","x":"0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc","kid":"ed-1","alg":"EdDSA"})";

std::string run(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[512];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    if (status) *status = st;
    return out;
}

bool have_ssh_keygen() {
    return std::system("command -v ssh-keygen >/dev/null 2>&1") == 0;
}

}  // namespace

// ---- files --------------------------------------------------------------------------------------

TEST(KeysFiles, ReadLimitedNamesTheFile) {
    temp_dir d;
    std::string m;
    auto missing = read_file_limited(d.file("none"), 10, m);
    EXPECT_EQ(missing.code(), errc::io);
    EXPECT_EQ(missing.err().sys, ENOENT);
    EXPECT_EQ(m, d.file("none") + ": No such file or directory");
    auto big = d.write("big", std::string(11, 'x'));
    EXPECT_EQ(read_file_limited(big, 10, m).code(), errc::limit_exceeded);
    EXPECT_EQ(m, big + ": larger than 10 bytes");
    auto ok = read_file_limited(d.write("ok", "0123456789"), 10, m);
    ASSERT_TRUE(ok) << m;
    EXPECT_EQ(*ok, "0123456789");
    EXPECT_EQ(read_file_limited(d.path, 10, m).code(), errc::invalid_argument);
}

TEST(KeysFiles, AtomicWriteModesAndNoReplace) {
    temp_dir d;
    std::string m;
    auto p = d.file("f");
    ASSERT_TRUE(write_file_atomic(p, "one", 0600, replace::no, m)) << m;
    EXPECT_EQ(file_mode(p), 0600u);
    EXPECT_EQ(read_all(p), "one");
    auto again = write_file_atomic(p, "two", 0600, replace::no, m);
    EXPECT_EQ(again.code(), errc::closed);
    EXPECT_EQ(read_all(p), "one");
    ASSERT_TRUE(write_file_atomic(p, "three", 0644, replace::yes, m)) << m;
    EXPECT_EQ(read_all(p), "three");
    EXPECT_EQ(file_mode(p), 0644u);
    // No temporary files are left behind.
    EXPECT_EQ(run("ls -A '" + d.path + "'"), "f\n");
    EXPECT_FALSE(write_file_atomic(d.file("no/such/dir/f"), "x", 0600, replace::yes, m));
    EXPECT_NE(m.find(d.file("no/such/dir/f")), std::string::npos) << m;
}

TEST(KeysFiles, PrivateDirIsCreated0700WithParents) {
    temp_dir d;
    std::string m;
    auto dir = d.file("a/b/c");
    ASSERT_TRUE(ensure_private_dir(dir, m)) << m;
    EXPECT_EQ(file_mode(dir), 0700u);
    EXPECT_EQ(file_mode(d.file("a")), 0700u);
    ASSERT_TRUE(ensure_private_dir(dir, m)) << m;  // existing: fine
    d.write("plain", "x");
    EXPECT_FALSE(ensure_private_dir(d.file("plain"), m));
    EXPECT_NE(m.find("not a directory"), std::string::npos) << m;
}

// ---- JWT ----------------------------------------------------------------------------------------

TEST(KeysJwt, SecretFileTooShortIsAnErrorNamingTheFile) {
    temp_dir d;
    relay_settings s;
    s.jwt_secret_file = d.write("secret", std::string(31, 'k') + "\n");
    std::string m;
    auto r = load_jwt_keys(s, m);
    EXPECT_EQ(r.code(), errc::jwks_invalid);
    EXPECT_EQ(m, "jwt_secret_file " + s.jwt_secret_file +
                     ": the secret is 31 bytes, at least 32 are needed "
                     "(e.g. openssl rand -hex 32 > " +
                     s.jwt_secret_file + ")");
    s.jwt_secret_file = d.write("crlf", std::string(31, 'k') + "\r\n");
    EXPECT_FALSE(load_jwt_keys(s, m));
    EXPECT_NE(m.find("the secret is 31 bytes"), std::string::npos) << m;
    s.jwt_secret_file = d.file("missing");
    EXPECT_EQ(load_jwt_keys(s, m).code(), errc::io);
    EXPECT_EQ(m, "jwt_secret_file " + d.file("missing") + ": No such file or directory");
}

TEST(KeysJwt, SecretFileLoadsAndWarnsWhenOthersCanRead) {
    temp_dir d;
    relay_settings s;
    s.jwt_secret_file = d.write("secret", std::string(32, 'k') + "\n", 0644);
    std::string m;
    auto r = load_jwt_keys(s, m);
    ASSERT_TRUE(r) << m;
    ASSERT_EQ(r->keys->size(), 1u);
    EXPECT_EQ(r->keys->keys()[0].a().size(), 32u);  // the newline is not part of the secret
    ASSERT_EQ(r->notes.size(), 1u);
    EXPECT_NE(r->notes[0].find("mode 0644"), std::string::npos) << r->notes[0];
    ::chmod(s.jwt_secret_file.c_str(), 0600);
    auto quiet = load_jwt_keys(s, m);
    ASSERT_TRUE(quiet) << m;
    EXPECT_TRUE(quiet->notes.empty());
}

TEST(KeysJwt, JwksFileErrorsNameTheFileAndTheKey) {
    temp_dir d;
    relay_settings s;
    std::string m;
    s.jwks_file = d.write("bad.json", "{\"keys\": [");
    EXPECT_EQ(load_jwt_keys(s, m).code(), errc::jwks_invalid);
    EXPECT_EQ(m.rfind("jwks_file " + s.jwks_file + ": ", 0), 0u) << m;

    s.jwks_file = d.write(
        "private.json",
        R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":"0EqyMnQrtKs6E2i9RhXk5tAiSrcaAWuvhSCjMsl3hzc","d":"AAAA","kid":"p"}]})");
    EXPECT_EQ(load_jwt_keys(s, m).code(), errc::jwks_invalid);
    EXPECT_NE(m.find("keys[0]"), std::string::npos) << m;

    s.jwks_file = d.write("huge.json", std::string(300 * 1024, ' '));
    EXPECT_EQ(load_jwt_keys(s, m).code(), errc::limit_exceeded);
    EXPECT_NE(m.find("larger than"), std::string::npos) << m;

    s.jwks_file = d.file("absent.json");
    EXPECT_EQ(load_jwt_keys(s, m).code(), errc::io);
    EXPECT_NE(m.find("jwks_file " + s.jwks_file + ": No such file"), std::string::npos) << m;

    std::string enc(kEdJwk);
    const std::string kid = "\"kid\":\"ed-1\"";
    enc.replace(enc.find(kid), kid.size(), "\"kid\":\"e2\",\"use\":\"enc\"");
    s.jwks_file = d.write("ok.json", "{\"keys\":[" + std::string(kEdJwk) + "," + enc + "]}");
    auto ok = load_jwt_keys(s, m);
    ASSERT_TRUE(ok) << m;
    EXPECT_EQ(ok->keys->size(), 1u);
    ASSERT_EQ(ok->notes.size(), 1u);
    EXPECT_NE(ok->notes[0].find("skipped keys[1]"), std::string::npos) << ok->notes[0];
}

TEST(KeysJwt, NoKeySourceOrNoUsableKeyRefusesTheStart) {
    // A relay without a key would refuse every token: ferryd must not start like that.
    relay_settings s;
    std::string m;
    auto r = load_jwt_keys(s, m);
    EXPECT_EQ(r.code(), errc::invalid_argument);
    EXPECT_EQ(m, "no key source: set jwt_secret_file or jwks_file");

    // A JWK set whose only key is skipped (an encryption key) yields none either.
    temp_dir d;
    std::string enc(kEdJwk);
    const std::string kid = "\"kid\":\"ed-1\"";
    enc.replace(enc.find(kid), kid.size(), "\"kid\":\"e2\",\"use\":\"enc\"");
    s.jwks_file = d.write("enc-only.json", "{\"keys\":[" + enc + "]}");
    r = load_jwt_keys(s, m);
    EXPECT_EQ(r.code(), errc::invalid_argument);
    EXPECT_EQ(m.rfind("no key source yields a usable key; ", 0), 0u) << m;
    EXPECT_NE(m.find("skipped keys[0]"), std::string::npos) << m;
}

TEST(KeysJwt, VerifyOptionsFromSettings) {
    relay_settings s;
    s.jwt_issuer = "https://id";
    s.jwt_audience = {"a", "b"};
    s.jwt_leeway_s = 5;
    s.jwt_algorithms = {"HS256", "EdDSA"};
    auto o = make_verify_options(s);
    EXPECT_EQ(o.issuer, "https://id");
    EXPECT_EQ(o.audiences, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(o.leeway, 5);
    EXPECT_TRUE(o.allowed.contains(jwt::alg::hs256));
    EXPECT_TRUE(o.allowed.contains(jwt::alg::eddsa));
    EXPECT_FALSE(o.allowed.contains(jwt::alg::rs256));
    EXPECT_FALSE(o.allowed.contains(jwt::alg::es256));
}

TEST(KeysJwt, MintedTokenVerifiesWithTheLoadedKeySet) {
    temp_dir d;
    std::string m;
    auto sf = load_or_create_secret(d.file("data"), m);
    ASSERT_TRUE(sf) << m;
    relay_settings s;
    s.jwt_secret_file = sf->path;
    s.jwt_audience = {"ferry"};
    s.jwt_leeway_s = 10;
    auto mat = load_jwt_keys(s, m);
    ASSERT_TRUE(mat) << m;

    auto secret = read_hs256_secret(sf->path, m);
    ASSERT_TRUE(secret) << m;
    jwt::mint_request req;
    req.sub = "alice";
    req.ttl = 600;
    req.aud = "ferry";
    req.tunnels = {"llm", "dev-1"};
    const jwt::unix_time now = 1'800'000'000;
    auto tok = jwt::mint_hs256(bytes(secret->data(), secret->size()), req, now);
    ASSERT_TRUE(tok);

    jwt::verifier v(mat->keys, make_verify_options(s));
    auto ok = v.verify(*tok, now + 1);
    ASSERT_TRUE(ok) << to_string(ok.code());
    EXPECT_EQ((*ok)->sub, "alice");
    EXPECT_TRUE((*ok)->grants("llm"));
    EXPECT_TRUE((*ok)->grants("dev-1"));
    EXPECT_FALSE((*ok)->grants("other"));
    EXPECT_EQ(*(*ok)->exp, now + 600);
    // Expired once ttl + leeway has passed.
    EXPECT_EQ(v.verify(*tok, now + 600 + 10).code(), errc::token_expired);
    EXPECT_TRUE(v.verify(*tok, now + 600 + 9));
    // Another secret does not verify it.
    relay_settings other;
    other.jwt_secret_file = d.write("other", std::string(40, 'z'));
    other.jwt_audience = {"ferry"};
    auto omat = load_jwt_keys(other, m);
    ASSERT_TRUE(omat) << m;
    jwt::verifier ov(omat->keys, make_verify_options(other));
    EXPECT_EQ(ov.verify(*tok, now + 1).code(), errc::token_bad_signature);
    // A wrong audience is refused.
    s.jwt_audience = {"elsewhere"};
    jwt::verifier av(mat->keys, make_verify_options(s));
    EXPECT_EQ(av.verify(*tok, now + 1).code(), errc::token_bad_audience);
}

TEST(KeysSecret, CreatedOnceWithMode0600) {
    temp_dir d;
    std::string m;
    auto a = load_or_create_secret(d.file("data"), m);
    ASSERT_TRUE(a) << m;
    EXPECT_TRUE(a->created);
    EXPECT_EQ(file_mode(a->path), 0600u);
    EXPECT_EQ(file_mode(d.file("data")), 0700u);
    std::string text = read_all(a->path);
    ASSERT_EQ(text.size(), 65u);
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), 64u);
    auto b = load_or_create_secret(d.file("data"), m);
    ASSERT_TRUE(b) << m;
    EXPECT_FALSE(b->created);
    EXPECT_EQ(read_all(b->path), text);
    // A short file there is reported, not replaced.
    d.write("data/jwt.secret", "short\n");
    EXPECT_FALSE(load_or_create_secret(d.file("data"), m));
    EXPECT_NE(m.find("at least 32"), std::string::npos) << m;
}

// ---- SSH host key -------------------------------------------------------------------------------

TEST(KeysHostKey, CreatedOnceThenTheSameKeyWithMode0600) {
    temp_dir d;
    std::string m;
    auto dir = d.file("state/ferry");
    auto a = load_or_create_host_key(dir, m);
    ASSERT_TRUE(a) << m;
    EXPECT_TRUE(a->created);
    EXPECT_EQ(a->path, dir + "/ssh_host_ed25519_key");
    EXPECT_EQ(file_mode(a->path), 0600u);
    EXPECT_EQ(file_mode(dir), 0700u);
    EXPECT_EQ(file_mode(a->path + ".pub"), 0644u);
    EXPECT_EQ(a->fingerprint.rfind("SHA256:", 0), 0u);
    EXPECT_EQ(a->fingerprint, host_key_fingerprint(a->key.public_key()));
    EXPECT_EQ(read_all(a->path + ".pub"), openssh_public_line(a->key.public_key(), "ferry-relay"));

    auto b = load_or_create_host_key(dir, m);
    ASSERT_TRUE(b) << m;
    EXPECT_FALSE(b->created);
    EXPECT_EQ(b->fingerprint, a->fingerprint);
    EXPECT_EQ(b->blob, a->blob);
    // The loaded key signs like the created one (same private key, not just the same public).
    std::string msg = "exchange hash";
    ssh::ed25519_signature sa, sb;
    ASSERT_TRUE(a->key.sign(as_bytes(msg), sa));
    ASSERT_TRUE(b->key.sign(as_bytes(msg), sb));
    EXPECT_EQ(sa, sb);
    EXPECT_TRUE(ssh::ed25519_verify(b->key.public_key(), as_bytes(msg), sb));
    // The seed builds the same key (one signer per shard).
    EXPECT_EQ(a->seed.bytes, b->seed.bytes);
    auto c = ssh::ed25519_private::from_seed(bytes(b->seed.bytes));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->public_key(), a->key.public_key());
}

TEST(KeysHostKey, ConcurrentStartsAgreeOnOneKey) {
    temp_dir d;
    auto dir = d.file("race");
    std::string fps[4];
    std::thread ts[4];
    for (int i = 0; i < 4; ++i)
        ts[i] = std::thread([&, i] {
            std::string m;
            auto k = load_or_create_host_key(dir, m);
            fps[i] = k ? k->fingerprint : "error: " + m;
        });
    for (auto& t : ts) t.join();
    for (int i = 1; i < 4; ++i) EXPECT_EQ(fps[i], fps[0]);
    EXPECT_EQ(fps[0].rfind("SHA256:", 0), 0u) << fps[0];
    std::string m;
    auto k = load_host_key(dir + "/ssh_host_ed25519_key", m);
    ASSERT_TRUE(k) << m;
    EXPECT_EQ(k->fingerprint, fps[0]);
}

TEST(KeysHostKey, WideModeIsReported) {
    temp_dir d;
    std::string m;
    auto a = load_or_create_host_key(d.path, m);
    ASSERT_TRUE(a) << m;
    ::chmod(a->path.c_str(), 0640);
    auto b = load_host_key(a->path, m);
    ASSERT_TRUE(b) << m;
    ASSERT_EQ(b->notes.size(), 1u);
    EXPECT_NE(b->notes[0].find("chmod 600"), std::string::npos);
}

TEST(KeysHostKey, HostKeyFileIsNeverCreated) {
    temp_dir d;
    relay_settings s;
    s.data_dir = d.file("data");
    s.host_key_file = d.file("mounted/key");
    std::string m;
    auto r = host_key_for(s, m);
    EXPECT_EQ(r.code(), errc::io);
    EXPECT_EQ(m, "host_key_file " + s.host_key_file + ": No such file or directory");
    EXPECT_NE(file_mode(d.path), 0u);
    EXPECT_EQ(file_mode(s.data_dir), 0u);  // nothing was created
    s.host_key_file.clear();
    auto g = host_key_for(s, m);
    ASSERT_TRUE(g) << m;
    EXPECT_TRUE(g->created);
}

TEST(KeysHostKey, OpenSshFormatRoundTripAndRejections) {
    std::array<std::byte, 32> seed{};
    for (std::size_t i = 0; i < 32; ++i) seed[i] = std::byte(i * 7 + 1);
    auto key = ssh::ed25519_private::from_seed(bytes(seed));
    ASSERT_TRUE(key);
    std::string text = encode_openssh_ed25519(seed, key->public_key(), 0x01020304, "comment");
    EXPECT_EQ(text.rfind("-----BEGIN OPENSSH PRIVATE KEY-----\n", 0), 0u);
    std::string why;
    auto back = decode_openssh_ed25519(text, why);
    ASSERT_TRUE(back) << why;
    EXPECT_EQ(*back, seed);

    // Tamper with the decoded structure and re-encode: each check fires.
    auto body = [&](const std::string& t) {
        std::string b64;
        auto s = t.find('\n') + 1;
        auto e = t.find("-----END");
        for (char c : t.substr(s, e - s))
            if (c != '\n') b64 += c;
        return *base64_decode(b64);
    };
    auto wrap = [](const std::vector<std::byte>& raw) {
        return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + base64_encode(raw) +
               "\n-----END OPENSSH PRIVATE KEY-----\n";
    };
    auto raw = body(text);
    auto find = [&](std::string_view needle) {
        std::string_view hay(reinterpret_cast<const char*>(raw.data()), raw.size());
        return hay.find(needle);
    };
    {
        auto r = raw;
        auto p = find("none");
        std::memcpy(r.data() + p, "aes2", 4);
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
        EXPECT_NE(why.find("encrypted with a passphrase"), std::string::npos) << why;
    }
    {
        auto r = raw;
        r[0] = std::byte('X');
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
        EXPECT_EQ(why, "not an openssh-key-v1 key");
    }
    {
        // The check integers are the first 8 bytes of the private section: break the second.
        auto r = raw;
        auto p = find(std::string_view("\x01\x02\x03\x04\x01\x02\x03\x04", 8));
        ASSERT_NE(p, std::string_view::npos);
        r[p + 7] = std::byte(0x05);
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
        EXPECT_NE(why.find("check integers differ"), std::string::npos) << why;
    }
    {
        // The last padding byte.
        auto r = raw;
        ASSERT_FALSE(r.empty());
        r[r.size() - 1] = std::byte(0x09);
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
        EXPECT_EQ(why, "bad padding in the private section");
    }
    {
        // The seed (private half), so that it no longer yields the stored public key.
        auto r = raw;
        auto p = find(std::string_view(reinterpret_cast<const char*>(seed.data()), 32));
        ASSERT_NE(p, std::string_view::npos);
        r[p] ^= std::byte(1);
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
        EXPECT_EQ(why, "the private key does not produce the stored public key");
    }
    {
        auto r = raw;
        r.resize(r.size() - 20);
        EXPECT_FALSE(decode_openssh_ed25519(wrap(r), why));
    }
    EXPECT_FALSE(decode_openssh_ed25519(
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", why));
    EXPECT_NE(why.find("not an OpenSSH private key"), std::string::npos) << why;
    EXPECT_FALSE(decode_openssh_ed25519("", why));
    EXPECT_FALSE(decode_openssh_ed25519(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n", why));
    EXPECT_EQ(why, "bad base64 inside the key block");
}

TEST(KeysHostKey, InteroperatesWithSshKeygen) {
    if (!have_ssh_keygen()) GTEST_SKIP() << "ssh-keygen not installed";
    temp_dir d;
    std::string m;
    // A key ssh-keygen made loads, with ssh-keygen's fingerprint.
    std::string theirs = d.file("theirs");
    int st = 0;
    run("ssh-keygen -q -t ed25519 -N '' -C test -f '" + theirs + "' 2>&1", &st);
    ASSERT_EQ(st, 0);
    auto k = load_host_key(theirs, m);
    ASSERT_TRUE(k) << m;
    std::string fp = run("ssh-keygen -l -f '" + theirs + "'");
    EXPECT_NE(fp.find(k->fingerprint), std::string::npos) << fp << " vs " << k->fingerprint;
    // A key we made is readable by ssh-keygen: same public key and fingerprint.
    auto ours = load_or_create_host_key(d.file("ours"), m);
    ASSERT_TRUE(ours) << m;
    std::string pub = run("ssh-keygen -y -f '" + ours->path + "'");
    auto key_part = [](const std::string& line) {  // "ssh-ed25519 BASE64" without the comment
        auto sp = line.find(' ');
        return line.substr(0, line.find_first_of(" \n", sp + 1));
    };
    EXPECT_EQ(key_part(pub), key_part(openssh_public_line(ours->key.public_key(), "")));
    EXPECT_EQ(key_part(pub).rfind("ssh-ed25519 AAAA", 0), 0u) << pub;
    std::string ofp = run("ssh-keygen -l -f '" + ours->path + "'");
    EXPECT_NE(ofp.find(ours->fingerprint), std::string::npos) << ofp;
    // An encrypted key is refused with the way out.
    std::string enc = d.file("enc");
    run("ssh-keygen -q -t ed25519 -N 'pass phrase' -f '" + enc + "' 2>&1", &st);
    ASSERT_EQ(st, 0);
    EXPECT_FALSE(load_host_key(enc, m));
    EXPECT_NE(m.find("ssh-keygen -p -N ''"), std::string::npos) << m;
    // An RSA key is refused: the host key must be ed25519.
    std::string rsa = d.file("rsa");
    run("ssh-keygen -q -t rsa -b 2048 -N '' -f '" + rsa + "' 2>&1", &st);
    ASSERT_EQ(st, 0);
    EXPECT_FALSE(load_host_key(rsa, m));
    EXPECT_NE(m.find("not an ssh-ed25519 key"), std::string::npos) << m;
}

// ---- TLS development material -------------------------------------------------------------------

TEST(KeysTls, GeneratedOnceUsableByTheServerContextAndReused) {
    temp_dir d;
    std::string m;
    auto dir = d.file("data");
    auto a = load_or_create_tls(dir, {"relay.test", "127.0.0.1"}, m);
    ASSERT_TRUE(a) << m;
    EXPECT_TRUE(a->created);
    EXPECT_EQ(file_mode(a->key_file), 0600u);
    EXPECT_EQ(file_mode(a->cert_file), 0644u);
    tls::server_options so;
    so.cert_file = a->cert_file;
    so.key_file = a->key_file;
    auto ctx = tls::server_context::create(so);
    EXPECT_TRUE(ctx) << ctx.err().detail;
    std::string cert = read_all(a->cert_file);
    auto b = load_or_create_tls(dir, {}, m);
    ASSERT_TRUE(b) << m;
    EXPECT_FALSE(b->created);
    EXPECT_EQ(read_all(b->cert_file), cert);
    // The certificate names what was asked (openssl reads it).
    if (std::system("command -v openssl >/dev/null 2>&1") == 0) {
        std::string text = run("openssl x509 -noout -text -in '" + a->cert_file + "'");
        EXPECT_NE(text.find("DNS:relay.test"), std::string::npos) << text;
        EXPECT_NE(text.find("IP Address:127.0.0.1"), std::string::npos) << text;
    }
}

// ---- base64 -------------------------------------------------------------------------------------

TEST(KeysBase64, Rfc4648VectorsAndStrictness) {
    const std::pair<std::string, std::string> v[] = {{"", ""},
                                                     {"f", "Zg=="},
                                                     {"fo", "Zm8="},
                                                     {"foo", "Zm9v"},
                                                     {"foob", "Zm9vYg=="},
                                                     {"fooba", "Zm9vYmE="},
                                                     {"foobar", "Zm9vYmFy"}};
    for (auto& [plain, enc] : v) {
        EXPECT_EQ(base64_encode(as_bytes(plain)), enc);
        auto d = base64_decode(enc);
        ASSERT_TRUE(d) << enc;
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->data()), d->size()), plain);
    }
    for (std::string bad : {"Zg", "Zg=", "Zh==", "Zm9=", "Z m9v", "Zm9v\n", "Zg==Zg==", "=Zg="})
        EXPECT_FALSE(base64_decode(bad)) << bad;
}
