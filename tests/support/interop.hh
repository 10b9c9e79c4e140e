#pragma once
// Helpers for interoperability tests that run real peers (sshd, our test server) on loopback:
// temporary folders, child processes, base64 for OpenSSH key files, TCP helpers. Streams and
// their checksums are in stream.hh.
// Test-only code: blocking, throws nothing, reports failures through return values.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "proto/base/buffer.hh"

namespace ferry::test {

inline std::uint64_t now_ms() {
    return std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string read_text_file(const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// ---- base64 (OpenSSH public key lines) --------------------------------------------------------

inline std::vector<std::byte> unbase64(std::string_view s) {
    std::vector<std::byte> out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else continue;  // '=' padding and whitespace
        acc = (acc << 6) | std::uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::byte((acc >> bits) & 0xff));
        }
    }
    return out;
}

inline std::string base64(bytes blob) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string b64;
    for (std::size_t i = 0; i < blob.size(); i += 3) {
        std::uint32_t v = std::to_integer<std::uint32_t>(blob[i]) << 16;
        if (i + 1 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 1]) << 8;
        if (i + 2 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 2]);
        b64 += tbl[(v >> 18) & 63];
        b64 += tbl[(v >> 12) & 63];
        b64 += i + 1 < blob.size() ? tbl[(v >> 6) & 63] : '=';
        b64 += i + 2 < blob.size() ? tbl[v & 63] : '=';
    }
    return b64;
}

inline std::string hex(bytes b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::byte x : b) {
        s += d[std::to_integer<unsigned>(x) >> 4];
        s += d[std::to_integer<unsigned>(x) & 15];
    }
    return s;
}

// ---- temporary folder -------------------------------------------------------------------------

class temp_dir {
public:
    explicit temp_dir(const char* prefix = "ferry-interop") {
        std::string t = std::string("/tmp/") + prefix + "-XXXXXX";
        std::vector<char> b(t.begin(), t.end());
        b.push_back('\0');
        if (mkdtemp(b.data())) path_ = b.data();
        // Readable by the unprivileged users sshd switches to (authorized_keys is read as them).
        if (!path_.empty()) chmod(path_.c_str(), 0755);
    }
    ~temp_dir() {
        if (!path_.empty() && !std::getenv("FERRY_KEEP_TMP")) {
            std::string cmd = "rm -rf '" + path_ + "'";
            (void)!std::system(cmd.c_str());
        }
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    bool ok() const { return !path_.empty(); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// ---- child processes --------------------------------------------------------------------------

struct child {
    pid_t pid = -1;
    int out = -1;  // its stdout (when captured), else -1
};

// Starts argv[0] with stdin from /dev/null, stdout on a pipe (capture_stdout) or the file
// `err_path` too, and stderr appended to `err_path`. The child gets its own process group so
// stop() can signal it and whatever it forked.
inline child spawn(const std::vector<std::string>& argv, const std::string& err_path,
                   bool capture_stdout) {
    int p[2] = {-1, -1};
    if (capture_stdout && pipe2(p, O_CLOEXEC) != 0) return {};
    child c;
    c.pid = fork();
    if (c.pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (e >= 0) dup2(e, 2);
        if (capture_stdout) dup2(p[1], 1);
        else if (e >= 0) dup2(e, 1);
        for (int fd = 3; fd < 1024; ++fd) close(fd);
        std::vector<char*> a;
        for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        execv(a[0], a.data());
        _exit(127);
    }
    if (capture_stdout) {
        close(p[1]);
        c.out = p[0];
    }
    return c;
}

// SIGTERM, then SIGKILL after `grace_ms`; returns the wait status (-1 if none).
inline int stop(child& c, int grace_ms = 2000) {
    if (c.out >= 0) {
        close(c.out);
        c.out = -1;
    }
    if (c.pid <= 0) return -1;
    int st = 0;
    if (waitpid(c.pid, &st, WNOHANG) == c.pid) {
        c.pid = -1;
        return st;
    }
    kill(c.pid, SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 20) {
        if (waitpid(c.pid, &st, WNOHANG) == c.pid) {
            c.pid = -1;
            return st;
        }
        usleep(20000);
    }
    kill(c.pid, SIGKILL);
    waitpid(c.pid, &st, 0);
    c.pid = -1;
    return st;
}

// Reads a child's stdout line by line with a deadline.
class line_reader {
public:
    explicit line_reader(int fd) : fd_(fd) {}
    // The next line (without '\n'), or false on EOF / timeout.
    bool next(std::string& line, int timeout_ms) {
        auto deadline = now_ms() + std::uint64_t(timeout_ms);
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return true;
            }
            std::uint64_t now = now_ms();
            if (now >= deadline) return false;
            pollfd p{fd_, POLLIN, 0};
            int r = ::poll(&p, 1, int(deadline - now));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return false;
            char b[4096];
            ssize_t n = ::read(fd_, b, sizeof b);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            buf_.append(b, std::size_t(n));
        }
    }
    // Waits for a line starting with `prefix`; other lines are collected in `skipped`.
    bool wait_for(std::string_view prefix, std::string& line, int timeout_ms,
                  std::string* skipped = nullptr) {
        auto deadline = now_ms() + std::uint64_t(timeout_ms);
        while (now_ms() < deadline) {
            if (!next(line, int(deadline - now_ms()))) return false;
            if (line.rfind(prefix, 0) == 0) return true;
            if (skipped) *skipped += line + "\n";
        }
        return false;
    }

private:
    int fd_;
    std::string buf_;
};

// ---- TCP --------------------------------------------------------------------------------------

// `rcvbuf` > 0 fixes the receive buffer (no autotuning), so a paused reader fills it soon.
inline int connect_loopback(std::uint16_t port, int rcvbuf = 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// A listening socket on 127.0.0.1 (port 0: any); `port` receives the bound port.
inline int listen_loopback(std::uint16_t& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        return -1;
    }
    port = ntohs(a.sin_port);
    return fd;
}

// A port that was free a moment ago (for daemons that want a port number on the command line).
inline std::uint16_t pick_free_port() {
    std::uint16_t port = 0;
    int fd = listen_loopback(port);
    if (fd < 0) return 0;
    ::close(fd);
    return port;
}

}  // namespace ferry::test
