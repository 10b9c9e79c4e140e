#include "agent/known_hosts.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/base/log.hh"
#include "proto/jwt/base64url.hh"
#include "proto/ssh/wire.hh"

namespace ferry::agent {

namespace {

constexpr std::size_t max_file_bytes = 4 << 20;  // a known_hosts file larger than this is refused
constexpr std::size_t max_key_text = 16 * 1024;  // base64 of one key (RSA 16384 fits)

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool iequal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

bool is_space(char c) noexcept { return c == ' ' || c == '\t'; }

// Next whitespace-separated field of `line`, advancing it.
std::string_view next_field(std::string_view& line) noexcept {
    std::size_t i = 0;
    while (i < line.size() && is_space(line[i])) ++i;
    std::size_t j = i;
    while (j < line.size() && !is_space(line[j])) ++j;
    std::string_view f = line.substr(i, j - i);
    line.remove_prefix(j);
    return f;
}

// The type name inside a wire-format key blob.
std::string_view blob_type(bytes blob) noexcept {
    ssh::reader r(blob);
    auto t = r.string();
    if (!t) return {};
    return std::string_view(reinterpret_cast<const char*>(t->data()), t->size());
}

// Does the comma-separated host list `hosts` name `name` exactly? Sets `understood` to false
// when an entry uses syntax we skip (hashed names, patterns, negations).
bool hosts_match(std::string_view hosts, std::string_view name, bool& understood) noexcept {
    bool hit = false;
    while (!hosts.empty()) {
        std::size_t c = hosts.find(',');
        std::string_view h = hosts.substr(0, c);
        hosts.remove_prefix(c == std::string_view::npos ? hosts.size() : c + 1);
        if (h.empty() || h.front() == '|' || h.find_first_of("*?!") != std::string_view::npos) {
            understood = false;
            continue;
        }
        if (iequal(h, name)) hit = true;
    }
    return hit;
}

int read_whole(const std::string& path, std::string& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    out.clear();
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            return e;
        }
        if (n == 0) break;
        out.append(buf, std::size_t(n));
        if (out.size() > max_file_bytes) {
            ::close(fd);
            return EFBIG;
        }
    }
    ::close(fd);
    return 0;
}

// mkdir -p for the folder of `path` (mode 0700 for what we create).
void make_parent(const std::string& path) {
    std::size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) return;
    std::string dir = path.substr(0, slash);
    for (std::size_t i = 1; i <= dir.size(); ++i) {
        if (i == dir.size() || dir[i] == '/') {
            std::string part = dir.substr(0, i);
            if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return;
        }
    }
}

int append_line(const std::string& path, const std::string& line) {
    make_parent(path);
    int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);  // read: the last byte
    if (fd < 0) return errno;
    // A file that does not end with a newline would glue our line to its last one.
    struct stat st {};
    std::string text = line;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        char last = '\n';
        if (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') text.insert(text.begin(), '\n');
    }
    const char* p = text.data();
    std::size_t left = text.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            return e;
        }
        p += n;
        left -= std::size_t(n);
    }
    int e = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return e;
}

}  // namespace

std::string known_hosts_name(std::string_view host, std::uint16_t port) {
    std::string h;
    h.reserve(host.size());
    for (char c : host) h += lower(c);
    if (port == 22) return h;
    return "[" + h + "]:" + std::to_string(port);
}

std::string base64_encode(bytes in) {
    std::string s = jwt::base64url::encode(in);
    for (char& c : s) {
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
    }
    while (s.size() % 4 != 0) s += '=';
    return s;
}

result<std::vector<std::byte>> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return fail(errc::malformed, "base64 length is not a multiple of 4");
    std::size_t pad = 0;
    while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
    std::string t(text.substr(0, text.size() - pad));
    for (char& c : t) {
        if (c == '-' || c == '_' || c == '=') return fail(errc::malformed, "not standard base64");
        if (c == '+') c = '-';
        else if (c == '/') c = '_';
    }
    const std::size_t n = jwt::base64url::decoded_size(t.size());
    if (n == SIZE_MAX) return fail(errc::malformed, "bad base64 length");
    std::vector<std::byte> out(n);
    auto r = jwt::base64url::decode(t, mut_bytes(out));
    if (!r) return fail(errc::malformed, "bad base64");
    out.resize(*r);
    return out;
}

known_hosts_match find_known_hosts(std::string_view text, std::string_view name) {
    known_hosts_match m;
    while (!text.empty()) {
        std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::string_view rest = line;
        std::string_view first = next_field(rest);
        if (first.empty() || first.front() == '#') continue;
        bool revoked = false;
        if (first.front() == '@') {
            if (first != "@revoked") {  // @cert-authority: certificates are not used by ferry
                ++m.skipped;
                continue;
            }
            revoked = true;
            first = next_field(rest);
        }
        std::string_view type = next_field(rest);
        std::string_view b64 = next_field(rest);
        if (first.empty() || type.empty() || b64.empty() || b64.size() > max_key_text) {
            ++m.skipped;
            continue;
        }
        bool understood = true;
        bool hit = hosts_match(first, name, understood);
        if (!understood) ++m.skipped;
        if (!hit) continue;
        auto blob = base64_decode(b64);
        if (!blob || blob_type(*blob) != type) {
            ++m.skipped;
            continue;
        }
        m.keys.push_back({std::string(type), std::move(*blob), revoked});
    }
    return m;
}

std::string known_hosts_line(std::string_view name, bytes blob) {
    std::string l(name);
    l += ' ';
    l += blob_type(blob);
    l += ' ';
    l += base64_encode(blob);
    l += '\n';
    return l;
}

known_hosts_verifier::known_hosts_verifier(std::string path, std::string name)
    : path_(std::move(path)), name_(std::move(name)) {}

bool known_hosts_verifier::accept(std::string_view algorithm, bytes key_blob) {
    offered_ = ssh::fingerprint_sha256(key_blob);
    expected_.clear();
    detail_.clear();
    if (algorithm != ssh::ssh_ed25519 || blob_type(key_blob) != ssh::ssh_ed25519) {
        last_ = outcome::refused;
        detail_ = "host key algorithm is not ssh-ed25519";
        return false;
    }
    std::string text;
    if (!path_.empty()) {
        int e = read_whole(path_, text);
        if (e != 0 && e != ENOENT) {
            last_ = outcome::refused;
            detail_ = "cannot read known_hosts " + path_ + ": " + std::strerror(e);
            return false;
        }
    }
    text += memory_;
    known_hosts_match m = find_known_hosts(text, name_);
    bool any = false;
    for (const known_host_key& k : m.keys) {
        const bool same = std::equal(k.blob.begin(), k.blob.end(), key_blob.begin(), key_blob.end());
        if (k.revoked) {
            if (same) {
                last_ = outcome::refused;
                detail_ = "the host key is marked @revoked";
                return false;
            }
            continue;
        }
        if (same) {
            last_ = outcome::matched;
            return true;
        }
        any = true;
        if (!expected_.empty()) expected_ += ", ";
        expected_ += ssh::fingerprint_sha256(k.blob);
    }
    if (any) {
        last_ = outcome::mismatch;
        return false;
    }
    // Trust on first use: remember the key for this process, then in the file.
    std::string line = known_hosts_line(name_, key_blob);
    memory_ += line;
    last_ = outcome::learned;
    if (!path_.empty()) {
        if (int e = append_line(path_, line); e != 0) {
            detail_ = "cannot save the key to " + path_ + ": " + std::strerror(e) +
                      " (kept in memory for this run)";
        }
    }
    return true;
}

}  // namespace ferry::agent
