#include "proto/http1/writer.hh"

#include <cstring>

#include "proto/http1/scan.hh"

namespace ferry::http1 {

namespace {

bool static_hop_by_hop(std::string_view n) noexcept {
    switch (n.size()) {
    case 2: return iequals(n, "te");
    case 7: return iequals(n, "trailer") || iequals(n, "upgrade");
    case 10: return iequals(n, "connection") || iequals(n, "keep-alive");
    case 16: return iequals(n, "proxy-connection");
    case 17: return iequals(n, "transfer-encoding");
    default: return false;
    }
}

bool valid_token(std::string_view s) noexcept {
    return !s.empty() && detail::skip_tchars(s.data(), s.data() + s.size()) == s.data() + s.size();
}

bool valid_text(std::string_view s) noexcept {
    return detail::find_special(s.data(), s.data() + s.size()) == s.data() + s.size();
}

bool valid_target(std::string_view s) noexcept {
    return !s.empty() && valid_text(s) &&
           detail::find_non_target(s.data(), s.data() + s.size()) == s.data() + s.size();
}

// Decides which parsed fields are written. Holds views into the caller's header list. The
// Connection lines are collected once (the relay rewrites every request head).
class field_filter {
public:
    field_filter(std::span<const header> headers, const rewrite& rw) noexcept : headers_(headers), rw_(rw) {
        if (!rw.strip_hop_by_hop) return;
        for (const header& h : headers) {
            if (h.name.size() != 10 || !iequals(h.name, "connection")) continue;
            if (nconn_ < max_conn) conns_[nconn_++] = h.value;
            else many_conn_ = true;
        }
    }

    bool keep(const header& h) const noexcept {
        if (rw_.strip_hop_by_hop && !(rw_.keep_transfer_encoding && h.name.size() == 17 &&
                                      iequals(h.name, "transfer-encoding"))) {
            if (static_hop_by_hop(h.name)) return false;
            for (std::size_t i = 0; i < nconn_; ++i)
                if (has_token(conns_[i], h.name)) return false;
            if (many_conn_)
                for (const header& c : headers_)
                    if (iequals(c.name, "connection") && has_token(c.value, h.name)) return false;
        }
        for (std::string_view d : rw_.drop)
            if (iequals(h.name, d)) return false;
        return true;
    }

private:
    static constexpr std::size_t max_conn = 8;
    std::span<const header> headers_;
    const rewrite& rw_;
    std::string_view conns_[max_conn];
    std::size_t nconn_ = 0;
    bool many_conn_ = false;
};

struct cursor {
    char* p;
    void put(std::string_view s) noexcept {
        if (s.empty()) return;  // data() may be null: memcpy must not see it
        std::memcpy(p, s.data(), s.size());
        p += s.size();
    }
    void put(char c) noexcept { *p++ = c; }
};

// Validates the fields, sizes the head, then writes it in one go. `start_len` bytes of start
// line (without CRLF) are written by `write_start`.
template <class StartWriter>
status write_fields(buffer_chain& out, std::size_t start_len, StartWriter&& write_start,
                    std::span<const header> headers, const rewrite& rw) {
    field_filter filt(headers, rw);
    // Keep decisions are made once and remembered for the usual head sizes.
    constexpr std::size_t cached = 128;
    bool keep[cached];
    auto kept = [&](std::size_t i) { return i < cached ? keep[i] : filt.keep(headers[i]); };
    std::size_t total = start_len + 2 + 2;
    for (std::size_t i = 0; i < headers.size(); ++i) {
        const header& h = headers[i];
        bool k = filt.keep(h);
        if (i < cached) keep[i] = k;
        if (!k) continue;
        if (!valid_token(h.name) || !valid_text(h.value))
            return fail(errc::invalid_argument, "invalid header field");
        total += h.name.size() + 2 + h.value.size() + 2;
    }
    for (const header& h : rw.add) {
        if (!valid_token(h.name) || !valid_text(h.value))
            return fail(errc::invalid_argument, "invalid added header field");
        total += h.name.size() + 2 + h.value.size() + 2;
    }
    mut_bytes room = out.prepare(total);
    cursor c{reinterpret_cast<char*>(room.data())};
    write_start(c);
    c.put("\r\n");
    auto emit = [&](const header& h) {
        c.put(h.name);
        c.put(": ");
        c.put(h.value);
        c.put("\r\n");
    };
    for (std::size_t i = 0; i < headers.size(); ++i)
        if (kept(i)) emit(headers[i]);
    for (const header& h : rw.add) emit(h);
    c.put("\r\n");
    out.commit(total);
    return {};
}

std::string_view version_text(version v) noexcept {
    return v == version::http_1_0 ? std::string_view("HTTP/1.0") : std::string_view("HTTP/1.1");
}

}  // namespace

bool is_hop_by_hop(std::string_view name, std::string_view connection_value) noexcept {
    return static_hop_by_hop(name) || (!connection_value.empty() && has_token(connection_value, name));
}

status write_request_head(buffer_chain& out, std::string_view method, std::string_view target,
                          version v, std::span<const header> headers, const rewrite& rw) {
    if (!valid_token(method)) return fail(errc::invalid_argument, "invalid method");
    if (!valid_target(target)) return fail(errc::invalid_argument, "invalid request target");
    const std::string_view ver = version_text(v);
    const std::size_t start_len = method.size() + 1 + target.size() + 1 + ver.size();
    return write_fields(
        out, start_len,
        [&](cursor& c) {
            c.put(method);
            c.put(' ');
            c.put(target);
            c.put(' ');
            c.put(ver);
        },
        headers, rw);
}

status write_response_head(buffer_chain& out, version v, int status_code, std::string_view reason,
                           std::span<const header> headers, const rewrite& rw) {
    if (status_code < 100 || status_code > 999) return fail(errc::invalid_argument, "invalid status code");
    if (!valid_text(reason)) return fail(errc::invalid_argument, "invalid reason phrase");
    const std::string_view ver = version_text(v);
    const std::size_t start_len = ver.size() + 1 + 3 + 1 + reason.size();
    return write_fields(
        out, start_len,
        [&](cursor& c) {
            c.put(ver);
            c.put(' ');
            c.put(static_cast<char>('0' + status_code / 100));
            c.put(static_cast<char>('0' + status_code / 10 % 10));
            c.put(static_cast<char>('0' + status_code % 10));
            c.put(' ');
            c.put(reason);
        },
        headers, rw);
}

status write_head(buffer_chain& out, const request_head& h, const rewrite& rw, std::string_view target) {
    return write_request_head(out, h.method, target.empty() ? h.target : target, h.ver, h.headers, rw);
}

status write_head(buffer_chain& out, const response_head& h, const rewrite& rw) {
    return write_response_head(out, h.ver, h.status_code, h.reason, h.headers, rw);
}

}  // namespace ferry::http1
