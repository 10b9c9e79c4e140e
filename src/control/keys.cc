// Key material: files in, validated keys out (see keys.hh).
#include "control/keys.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "proto/ssh/hostkey.hh"
#include "proto/ssh/wire.hh"
#include "proto/tls/certgen.hh"

namespace ferry::control {

namespace {

constexpr std::size_t max_secret_file = 64 * 1024;
constexpr std::size_t max_key_file = 16 * 1024;
constexpr std::string_view host_key_name = "ssh_host_ed25519_key";
constexpr std::string_view openssh_magic{"openssh-key-v1\0", 15};
constexpr std::string_view pem_begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
constexpr std::string_view pem_end = "-----END OPENSSH PRIVATE KEY-----";

std::string errno_text(int e) {
    return std::strerror(e);
}

std::string join_path(const std::string& dir, std::string_view name) {
    if (dir.empty()) return std::string(name);
    return dir.back() == '/' ? dir + std::string(name) : dir + "/" + std::string(name);
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

// Wipes a string holding secret material before it is freed.
void wipe_string(std::string& s) {
    if (!s.empty()) ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(s.data()), s.size()));
    s.clear();
}
void wipe_vector(std::vector<std::byte>& v) {
    if (!v.empty()) ssh::wipe(mut_bytes(v.data(), v.size()));
    v.clear();
}

// "FILE is readable by other users (mode 0644): chmod 600 FILE" when group/other bits are set.
void note_permissions(const std::string& path, std::vector<std::string>& notes) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return;
    if (st.st_mode & 077) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        notes.push_back(path + " is accessible to other users (mode " + mode + "): chmod 600 " +
                        path);
    }
}

result<std::unique_ptr<ssh::system_rng>> make_rng(std::string& message) {
    auto r = ssh::system_rng::create();
    if (!r) {
        message = "cannot initialise the random generator";
        return fail(errc::crypto, "rng");
    }
    return std::move(*r);
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

// ---- files --------------------------------------------------------------------------------------

result<std::string> read_file_limited(const std::string& path, std::size_t max,
                                      std::string& message) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        message = path + ": " + errno_text(e);
        return fail(error::from_errno(e, "open"));
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd);
        message = path + ": is a directory";
        return fail(errc::invalid_argument, "directory");
    }
    std::string out;
    char buf[8192];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            wipe_string(out);
            message = path + ": " + errno_text(e);
            return fail(error::from_errno(e, "read"));
        }
        if (n == 0) break;
        if (out.size() + std::size_t(n) > max) {
            ::close(fd);
            wipe_string(out);
            message = path + ": larger than " + std::to_string(max) + " bytes";
            return fail(errc::limit_exceeded, "file too large");
        }
        out.append(buf, std::size_t(n));
    }
    ::close(fd);
    ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(buf), sizeof buf));
    return out;
}

status write_file_atomic(const std::string& path, std::string_view data, unsigned mode, replace r,
                         std::string& message) {
    static std::atomic<unsigned> counter{0};
    std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        message = path + ": cannot create " + tmp + ": " + errno_text(e);
        return fail(error::from_errno(e, "create"));
    }
    auto bail = [&](const char* what) {
        int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        message = path + ": " + what + ": " + errno_text(e);
        return fail(error::from_errno(e, what));
    };
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return bail("write");
        off += std::size_t(n);
    }
    // The umask may have taken bits away from `mode`; set exactly what was asked.
    if (::fchmod(fd, mode) != 0) return bail("chmod");
    if (::fsync(fd) != 0) return bail("fsync");
    if (::close(fd) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        message = path + ": close: " + errno_text(e);
        return fail(error::from_errno(e, "close"));
    }
    if (r == replace::yes) {
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            int e = errno;
            ::unlink(tmp.c_str());
            message = path + ": rename: " + errno_text(e);
            return fail(error::from_errno(e, "rename"));
        }
    } else {
        // link() fails with EEXIST instead of replacing: whoever links first wins.
        int rc = ::link(tmp.c_str(), path.c_str());
        int e = errno;
        if (rc != 0 && e != EEXIST) {
            // File systems without hard links: rename after a check (a narrow race remains).
            if (exists(path)) {
                e = EEXIST;
            } else if (::rename(tmp.c_str(), path.c_str()) == 0) {
                rc = 0;
            } else {
                e = errno;
            }
        }
        ::unlink(tmp.c_str());
        if (rc != 0) {
            if (e == EEXIST) {
                message = path + ": exists";
                return fail(errc::closed, "exists");
            }
            message = path + ": link: " + errno_text(e);
            return fail(error::from_errno(e, "link"));
        }
    }
    int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);  // best effort: the rename itself already happened
        ::close(dfd);
    }
    return {};
}

status ensure_private_dir(const std::string& dir, std::string& message) {
    if (dir.empty()) {
        message = "data directory: empty path";
        return fail(errc::invalid_argument, "empty path");
    }
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        std::string part = dir.substr(0, pos);
        if (part.empty() || part == "." || part == "..") continue;
        if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
            int e = errno;
            message = part + ": cannot create directory: " + errno_text(e);
            return fail(error::from_errno(e, "mkdir"));
        }
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        message = dir + ": not a directory";
        return fail(errc::invalid_argument, "not a directory");
    }
    return {};
}

// ---- JWT ----------------------------------------------------------------------------------------

result<std::vector<std::byte>> read_hs256_secret(const std::string& path, std::string& message) {
    auto text = read_file_limited(path, max_secret_file, message);
    if (!text) return fail(text.err());
    auto secret = jwt::hs256_secret_from_file(as_bytes(*text));
    std::size_t len = text->size();
    if (len && text->back() == '\n') --len;
    if (len && text->back() == '\n' && (*text)[text->size() - 2] == '\r') --len;
    wipe_string(*text);
    if (!secret) {
        message = path + ": the secret is " + std::to_string(len) +
                  " bytes, at least 32 are needed (e.g. openssl rand -hex 32 > " + path + ")";
        return fail(errc::jwks_invalid, "secret too short");
    }
    return std::move(*secret);
}

status add_secret_file(jwt::key_set_builder& b, const std::string& path,
                       std::vector<std::string>& notes, std::string& message) {
    auto secret = read_hs256_secret(path, message);
    if (!secret) return fail(secret.err());
    std::string why;
    auto st = b.add_hs256_secret(bytes(secret->data(), secret->size()), {}, &why);
    wipe_vector(*secret);
    if (!st) {
        message = path + ": " + why;
        return st;
    }
    note_permissions(path, notes);
    return {};
}

status add_jwks_file(jwt::key_set_builder& b, const std::string& path,
                     std::vector<std::string>& notes, std::string& message) {
    jwt::jwks_options opt;
    auto text = read_file_limited(path, opt.lim.max_text, message);
    if (!text) return fail(text.err());
    jwt::jwks_report rep;
    std::string why;
    auto st = b.add_jwks(*text, opt, &rep, &why);
    if (!st) {
        message = path + ": " + why;
        return st;
    }
    for (auto& s : rep.skipped) notes.push_back(path + ": skipped " + s);
    return {};
}

result<jwt_material> load_jwt_keys(const relay_settings& s, std::string& message) {
    jwt::key_set_builder b;
    jwt_material m;
    if (!s.jwt_secret_file.empty()) {
        std::string why;
        auto st = add_secret_file(b, s.jwt_secret_file, m.notes, why);
        if (!st) {
            message = "jwt_secret_file " + why;
            return fail(st.err());
        }
    }
    if (!s.jwks_file.empty()) {
        std::string why;
        auto st = add_jwks_file(b, s.jwks_file, m.notes, why);
        if (!st) {
            message = "jwks_file " + why;
            return fail(st.err());
        }
    }
    m.keys = b.build();
    // A relay with no key refuses every token: that is a configuration mistake, not a state
    // to run in (a JWK set whose every key was skipped ends here too).
    if (!m.keys || m.keys->empty()) {
        message = s.jwt_secret_file.empty() && s.jwks_file.empty()
                      ? "no key source: set jwt_secret_file or jwks_file"
                      : "no key source yields a usable key";
        for (const auto& n : m.notes) message += "; " + n;
        return fail(errc::invalid_argument, "no JWT key");
    }
    return m;
}

jwt::verify_options make_verify_options(const relay_settings& s) {
    jwt::verify_options o;
    o.allowed = jwt::alg_set{};
    for (auto& n : s.jwt_algorithms)
        if (auto a = jwt::alg_by_name(n)) o.allowed.add(*a);
    o.issuer = s.jwt_issuer;
    o.audiences = s.jwt_audience;
    o.leeway = std::int64_t(s.jwt_leeway_s);
    return o;
}

// ---- base64 -------------------------------------------------------------------------------------

namespace {
constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}
}  // namespace

std::string base64_encode(bytes in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = (std::uint32_t(in[i]) << 16) | (std::uint32_t(in[i + 1]) << 8) |
                          std::uint32_t(in[i + 2]);
        out += b64_alphabet[v >> 18];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
        out += b64_alphabet[v & 63];
    }
    if (std::size_t rest = in.size() - i) {
        std::uint32_t v = std::uint32_t(in[i]) << 16;
        if (rest == 2) v |= std::uint32_t(in[i + 1]) << 8;
        out += b64_alphabet[v >> 18];
        out += b64_alphabet[(v >> 12) & 63];
        out += rest == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<std::vector<std::byte>> base64_decode(std::string_view t) {
    if (t.size() % 4) return std::nullopt;
    std::vector<std::byte> out;
    out.reserve(t.size() / 4 * 3);
    for (std::size_t i = 0; i < t.size(); i += 4) {
        bool last = i + 4 == t.size();
        int pad = 0;
        if (last && t[i + 3] == '=') pad = t[i + 2] == '=' ? 2 : 1;
        int v[4];
        for (int k = 0; k < 4 - pad; ++k) {
            v[k] = b64_value(t[i + std::size_t(k)]);
            if (v[k] < 0) return std::nullopt;
        }
        for (int k = 4 - pad; k < 4; ++k) v[k] = 0;
        std::uint32_t x = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                          (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
        // Canonical only: the bits the padding drops must be zero.
        if ((pad == 1 && (x & 0xff)) || (pad == 2 && (x & 0xffff))) return std::nullopt;
        out.push_back(std::byte(x >> 16));
        if (pad < 2) out.push_back(std::byte((x >> 8) & 0xff));
        if (pad < 1) out.push_back(std::byte(x & 0xff));
    }
    return out;
}

// ---- SSH host key -------------------------------------------------------------------------------

std::string host_key_fingerprint(const ssh::ed25519_public& pub) {
    auto blob = ssh::ed25519_key_blob(pub);
    return ssh::fingerprint_sha256(blob);
}

std::string openssh_public_line(const ssh::ed25519_public& pub, std::string_view comment) {
    auto blob = ssh::ed25519_key_blob(pub);
    std::string line = "ssh-ed25519 ";
    line += base64_encode(blob);
    if (!comment.empty()) {
        line += ' ';
        line += comment;
    }
    line += '\n';
    return line;
}

std::string encode_openssh_ed25519(const std::array<std::byte, 32>& seed,
                                   const ssh::ed25519_public& pub, std::uint32_t check,
                                   std::string_view comment) {
    std::vector<std::byte> priv;
    {
        ssh::writer p(priv);
        p.u32(check).u32(check).string(ssh::ssh_ed25519).string(bytes(pub));
        std::array<std::byte, 64> sk;
        std::memcpy(sk.data(), seed.data(), 32);
        std::memcpy(sk.data() + 32, pub.data(), 32);
        p.string(bytes(sk));
        ssh::wipe(sk);
        p.string(comment);
        for (std::uint8_t i = 1; priv.size() % 8; ++i) p.u8(i);  // block size 8 for "none"
    }
    std::vector<std::byte> all;
    ssh::writer w(all);
    w.raw(as_bytes(openssh_magic)).string("none").string("none").string("").u32(1);
    w.string(bytes(ssh::ed25519_key_blob(pub)));
    w.string(bytes(priv));
    wipe_vector(priv);
    std::string b64 = base64_encode(all);
    wipe_vector(all);
    std::string out(pem_begin);
    out += '\n';
    for (std::size_t i = 0; i < b64.size(); i += 70) {
        out.append(b64, i, 70);
        out += '\n';
    }
    out += pem_end;
    out += '\n';
    wipe_string(b64);
    return out;
}

result<std::array<std::byte, 32>> decode_openssh_ed25519(std::string_view text, std::string& why) {
    auto bad = [&](const char* w) {
        why = w;
        return fail(errc::invalid_argument, "host key");
    };
    auto b = text.find(pem_begin);
    auto e = text.find(pem_end);
    if (b == text.npos || e == text.npos || e < b) {
        if (text.find("-----BEGIN") != text.npos)
            return bad(
                "not an OpenSSH private key (expected \"-----BEGIN OPENSSH PRIVATE KEY-----\"; "
                "create one with ssh-keygen -t ed25519 -N '' -f FILE)");
        return bad("no \"-----BEGIN OPENSSH PRIVATE KEY-----\" block");
    }
    std::string b64;
    for (char c : text.substr(b + pem_begin.size(), e - b - pem_begin.size()))
        if (c != '\n' && c != '\r' && c != ' ' && c != '\t') b64 += c;
    auto raw = base64_decode(b64);
    wipe_string(b64);
    if (!raw) return bad("bad base64 inside the key block");
    struct wiper {
        std::vector<std::byte>& v;
        ~wiper() { wipe_vector(v); }
    } wipe_raw{*raw};

    bytes all(raw->data(), raw->size());
    if (all.size() < openssh_magic.size() ||
        as_string(all.subspan(0, openssh_magic.size())) != openssh_magic)
        return bad("not an openssh-key-v1 key");
    ssh::reader r(all.subspan(openssh_magic.size()));
    auto cipher = r.text();
    auto kdf = r.text();
    auto kdfopt = r.string();
    auto n = r.u32();
    if (!cipher || !kdf || !kdfopt || !n) return bad("truncated key header");
    if (*cipher != "none" || *kdf != "none")
        return bad(
            "the key is encrypted with a passphrase; ferryd needs it unencrypted "
            "(ssh-keygen -p -N '' -f FILE)");
    if (*n != 1) return bad("expected exactly one key in the file");
    auto pub_blob = r.string();
    auto priv = r.string();
    if (!pub_blob || !priv || !r.expect_end()) return bad("truncated or trailing data");
    auto pub = ssh::parse_ed25519_key_blob(*pub_blob);
    if (!pub)
        return bad(
            "not an ssh-ed25519 key (ferry's host key must be ed25519: ssh-keygen -t ed25519)");
    if (priv->size() % 8) return bad("private section not padded to the block size");
    ssh::reader p(*priv);
    auto c1 = p.u32();
    auto c2 = p.u32();
    auto type = p.text();
    auto pk = p.string();
    auto sk = p.string();
    auto comment = p.text();
    if (!c1 || !c2 || !type || !pk || !sk || !comment) return bad("truncated private section");
    if (*c1 != *c2) return bad("check integers differ (corrupt or encrypted key)");
    if (*type != ssh::ssh_ed25519) return bad("private key is not ssh-ed25519");
    if (pk->size() != 32 || sk->size() != 64) return bad("bad ed25519 key sizes");
    if (std::memcmp(pk->data(), pub->data(), 32) != 0 ||
        std::memcmp(sk->data() + 32, pub->data(), 32) != 0)
        return bad("public and private parts do not match");
    std::uint8_t expect = 1;
    for (std::byte x : p.rest())
        if (std::uint8_t(x) != expect++) return bad("bad padding in the private section");
    std::array<std::byte, 32> seed;
    std::memcpy(seed.data(), sk->data(), 32);
    // The seed must produce the public key the file claims.
    auto key = ssh::ed25519_private::from_seed(bytes(seed));
    if (!key || key->public_key() != *pub) {
        ssh::wipe(seed);
        return bad("the private key does not produce the stored public key");
    }
    return seed;
}

result<host_key> load_host_key(const std::string& path, std::string& message) {
    auto text = read_file_limited(path, max_key_file, message);
    if (!text) return fail(text.err());
    std::string why;
    auto seed = decode_openssh_ed25519(*text, why);
    wipe_string(*text);
    if (!seed) {
        message = path + ": " + why;
        return fail(seed.err());
    }
    auto key = ssh::ed25519_private::from_seed(bytes(*seed));
    if (!key) {
        ssh::wipe(*seed);
        message = path + ": wolfCrypt refused the key";
        return fail(errc::crypto, "host key");
    }
    host_key h{std::move(*key)};
    h.seed.bytes = *seed;
    ssh::wipe(*seed);
    h.path = path;
    h.blob = ssh::ed25519_key_blob(h.key.public_key());
    h.fingerprint = ssh::fingerprint_sha256(h.blob);
    note_permissions(path, h.notes);
    return h;
}

result<host_key> load_or_create_host_key(const std::string& data_dir, std::string& message) {
    FERRY_TRY(d, ensure_private_dir(data_dir, message));
    std::string path = join_path(data_dir, host_key_name);
    if (exists(path)) return load_host_key(path, message);

    FERRY_TRY(rng, make_rng(message));
    std::array<std::byte, 32> seed;
    std::uint32_t check = 0;
    std::array<std::byte, 4> cb;
    if (!(*rng)->fill(mut_bytes(seed)) || !(*rng)->fill(mut_bytes(cb))) {
        message = "random generator failed";
        return fail(errc::crypto, "rng");
    }
    std::memcpy(&check, cb.data(), 4);
    auto key = ssh::ed25519_private::from_seed(bytes(seed));
    if (!key) {
        ssh::wipe(seed);
        message = "cannot derive an ed25519 key";
        return fail(errc::crypto, "host key");
    }
    std::string text =
        encode_openssh_ed25519(seed, key->public_key(), check, "ferry relay host key");
    host_key h{std::move(*key)};
    h.seed.bytes = seed;
    ssh::wipe(seed);
    auto st = write_file_atomic(path, text, 0600, replace::no, message);
    wipe_string(text);
    if (!st) {
        if (st.code() == errc::closed) return load_host_key(path, message);  // another process won
        return fail(st.err());
    }
    std::string pub_msg;
    // The .pub file is for operators (pinning, ssh-keygen -l); failing to write it is not fatal.
    (void)write_file_atomic(path + ".pub", openssh_public_line(h.key.public_key(), "ferry-relay"),
                            0644, replace::yes, pub_msg);
    h.path = path;
    h.created = true;
    h.blob = ssh::ed25519_key_blob(h.key.public_key());
    h.fingerprint = ssh::fingerprint_sha256(h.blob);
    return h;
}

result<host_key> host_key_for(const relay_settings& s, std::string& message) {
    if (!s.host_key_file.empty()) {
        auto r = load_host_key(s.host_key_file, message);
        if (!r) message = "host_key_file " + message;
        return r;
    }
    auto r = load_or_create_host_key(s.data_dir, message);
    if (!r) message = "data_dir " + message;
    return r;
}

// ---- development TLS material and secret --------------------------------------------------------

result<tls_files> load_or_create_tls(const std::string& data_dir,
                                     const std::vector<std::string>& names, std::string& message) {
    tls_files f;
    f.cert_file = join_path(data_dir, "tls.crt");
    f.key_file = join_path(data_dir, "tls.key");
    if (exists(f.cert_file) && exists(f.key_file)) return f;
    FERRY_TRY(d, ensure_private_dir(data_dir, message));
    tls::cert_options o;
    if (!names.empty()) {
        o.dns_names.clear();
        o.ip_addresses.clear();
        for (auto& n : names) {
            unsigned char buf[16];
            if (inet_pton(AF_INET, n.c_str(), buf) == 1 || inet_pton(AF_INET6, n.c_str(), buf) == 1)
                o.ip_addresses.push_back(n);
            else
                o.dns_names.push_back(n);
        }
    }
    auto c = tls::generate_certificate(o, std::chrono::system_clock::now());
    if (!c) {
        message = f.cert_file + ": cannot generate a certificate: " + c.err().detail;
        return fail(c.err());
    }
    // Key first: a certificate never exists without its key.
    FERRY_TRY(k, write_file_atomic(f.key_file, c->key_pem, 0600, replace::yes, message));
    wipe_string(c->key_pem);
    FERRY_TRY(cf, write_file_atomic(f.cert_file, c->cert_pem, 0644, replace::yes, message));
    f.created = true;
    return f;
}

result<secret_file> load_or_create_secret(const std::string& data_dir, std::string& message) {
    secret_file f;
    f.path = join_path(data_dir, "jwt.secret");
    auto check_existing = [&]() -> result<secret_file> {
        jwt::key_set_builder b;
        std::vector<std::string> notes;
        FERRY_TRY(st, add_secret_file(b, f.path, notes, message));
        return f;
    };
    if (exists(f.path)) return check_existing();
    FERRY_TRY(d, ensure_private_dir(data_dir, message));
    FERRY_TRY(rng, make_rng(message));
    std::array<std::byte, 32> raw;
    if (!(*rng)->fill(mut_bytes(raw))) {
        message = "random generator failed";
        return fail(errc::crypto, "rng");
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string text;
    for (std::byte b : raw) {
        text += hex[std::uint8_t(b) >> 4];
        text += hex[std::uint8_t(b) & 15];
    }
    text += '\n';
    ssh::wipe(raw);
    auto st = write_file_atomic(f.path, text, 0600, replace::no, message);
    wipe_string(text);
    if (!st) {
        if (st.code() == errc::closed) return check_existing();
        return fail(st.err());
    }
    f.created = true;
    return f;
}

}  // namespace ferry::control
