#include "proto/ssh/version.hh"

namespace ferry::ssh {

namespace {
bool printable(std::string_view s) noexcept {
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u > 0x7e) return false;
    }
    return true;
}
}  // namespace

bool valid_version_string(std::string_view v) noexcept {
    if (v.size() + 2 > 255 || !printable(v)) return false;
    if (v.substr(0, 8) != "SSH-2.0-") return false;
    std::string_view sw = v.substr(8);
    return !sw.empty() && sw[0] != ' ' && sw[0] != '-';
}

result<bool> version_parser::feed(bytes& in) {
    if (done_) return true;
    while (!in.empty()) {
        char c = static_cast<char>(in[0]);
        in = in.subspan(1);
        if (c == '\n') {
            FERRY_TRY(r, finish_line());
            if (done_) return true;
            continue;
        }
        line_.push_back(c);
        bool is_version = line_.size() >= 4 ? line_.compare(0, 4, "SSH-") == 0
                                             : std::string_view("SSH-").substr(0, line_.size()) == line_;
        if (is_version || self_ == role::server) {
            // A version line (or anything a client sends) must fit in 255 bytes with CR LF.
            if (line_.size() + 1 > lim_.max_version_line) {
                return fail(errc::limit_exceeded, "version line too long");
            }
        } else if (banner_bytes_ + line_.size() > lim_.max_banner_bytes) {
            return fail(errc::limit_exceeded, "banner too long");
        }
    }
    return false;
}

status version_parser::finish_line() {
    std::size_t raw = line_.size() + 1;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.compare(0, 4, "SSH-") != 0) {
        if (self_ == role::server) return fail(errc::ssh_protocol, "client sent a non-version line");
        if (++banner_lines_ > lim_.max_banner_lines) {
            return fail(errc::limit_exceeded, "too many banner lines");
        }
        banner_bytes_ += raw;
        line_.clear();
        return {};
    }
    if (!printable(line_)) return fail(errc::ssh_protocol, "control byte in version line");
    std::string_view v(line_);
    std::string_view sw;
    if (v.compare(0, 8, "SSH-2.0-") == 0) {
        sw = v.substr(8);
    } else if (v.compare(0, 9, "SSH-1.99-") == 0) {
        sw = v.substr(9);
    } else {
        return fail(errc::ssh_version, "peer does not speak SSH-2.0");
    }
    if (sw.empty() || sw[0] == ' ') return fail(errc::ssh_protocol, "empty software version");
    done_ = true;
    return {};
}

}  // namespace ferry::ssh
