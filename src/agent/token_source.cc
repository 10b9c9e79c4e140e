#include "agent/token_source.hh"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace ferry::agent {

namespace {

std::string trim(std::string s) {
    auto sp = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && sp(s.back())) s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && sp(s[i])) ++i;
    s.erase(0, i);
    return s;
}

}  // namespace

result<std::string> read_token_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(error::from_errno(errno, "cannot open the token file"));
    std::string s;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            return fail(error::from_errno(e, "cannot read the token file"));
        }
        if (n == 0) break;
        s.append(buf, std::size_t(n));
        if (s.size() > max_token_bytes) {
            ::close(fd);
            return fail(errc::limit_exceeded, "the token file is larger than 64 KiB");
        }
    }
    ::close(fd);
    s = trim(std::move(s));
    if (s.empty()) return fail(errc::invalid_argument, "the token file is empty");
    return s;
}

result<std::string> run_token_command(const std::string& cmd) {
    FILE* p = ::popen(cmd.c_str(), "re");
    if (!p) return fail(error::from_errno(errno, "cannot run the token command"));
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        if (s.size() + n > max_token_bytes) {
            ::pclose(p);
            return fail(errc::limit_exceeded, "the token command printed more than 64 KiB");
        }
        s.append(buf, n);
    }
    int st = ::pclose(p);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        return fail(errc::invalid_argument, "the token command failed (non-zero exit)");
    }
    s = trim(std::move(s));
    if (s.empty()) return fail(errc::invalid_argument, "the token command printed nothing");
    return s;
}

token_source token_from_value(std::string jwt) {
    return [t = std::move(jwt)]() -> result<std::string> { return t; };
}

token_source token_from_file(std::string path) {
    return [f = std::move(path)]() { return read_token_file(f); };
}

token_source token_from_command(std::string cmd) {
    return [c = std::move(cmd)]() { return run_token_command(c); };
}

}  // namespace ferry::agent
