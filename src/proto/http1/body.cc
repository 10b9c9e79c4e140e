#include "proto/http1/body.hh"

#include <algorithm>

#include "proto/http1/scan.hh"

namespace ferry::http1 {

using detail::hex_value;
using detail::is_ows;
using detail::is_special;
using detail::is_tchar;

// ---- length_body --------------------------------------------------------------------------------

progress length_body::decode(bytes in) noexcept {
    progress r;
    r.at = stage::body;
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size()));
    remaining_ -= k;
    r.consumed = k;
    r.data = in.first(k);
    if (remaining_ == 0) {
        r.kind = outcome::done;
        r.at = stage::done;
    } else {
        r.kind = k ? outcome::payload : outcome::need_more;
    }
    return r;
}

progress length_body::pass_through(bytes in) noexcept {
    progress r = decode(in);
    r.data = {};
    if (r.kind == outcome::payload) r.kind = outcome::need_more;  // all of `in` was used
    return r;
}

// ---- chunked_decoder ----------------------------------------------------------------------------

void chunked_decoder::reset() noexcept {
    s_ = state::size_first;
    chunk_ = total_ = offset_ = 0;
    line_ = trailer_ = 0;
    tname_len_ = 0;
    last_ = progress{};
}

namespace {

// A trailer field that would change the message's framing if anyone read it as a header.
bool framing_field(std::string_view lower_name) noexcept {
    return lower_name == "content-length" || lower_name == "transfer-encoding";
}

char lower_ascii(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

}  // namespace

stage chunked_decoder::where() const noexcept {
    switch (s_) {
    case state::size_first:
    case state::size: return stage::chunk_size;
    case state::ext:
    case state::size_lf: return stage::chunk_ext;
    case state::data: return stage::chunk_data;
    case state::data_cr:
    case state::data_lf: return stage::chunk_data_end;
    case state::trailer_line:
    case state::trailer_name:
    case state::trailer_value:
    case state::trailer_lf:
    case state::trailer_end_lf: return stage::trailer;
    case state::done: return stage::done;
    case state::failed: return last_.at;
    }
    return stage::done;
}

progress chunked_decoder::fail(errc c, const char* detail, std::size_t i) noexcept {
    last_ = progress{};
    last_.kind = outcome::failed;
    last_.at = where();
    std::uint64_t off = offset_ + i;
    last_.err = error(c, detail, static_cast<std::uint32_t>(std::min<std::uint64_t>(off, UINT32_MAX)));
    s_ = state::failed;
    return last_;
}

progress chunked_decoder::decode(bytes in) noexcept {
    if (s_ == state::failed) return last_;
    progress r;
    if (s_ == state::done) {
        r.kind = outcome::done;
        r.at = stage::done;
        return r;
    }
    const char* p = reinterpret_cast<const char*>(in.data());
    const std::size_t n = in.size();
    std::size_t i = 0;
    // Trailer field lines seen in this input: [drop_at, drop_end). A field cut across calls
    // makes the next call's range start at 0.
    constexpr std::size_t none = ~std::size_t(0);
    std::size_t drop_at = (s_ == state::trailer_name || s_ == state::trailer_value || s_ == state::trailer_lf)
                              ? 0
                              : none;
    std::size_t drop_end = none;
    auto dropped = [&](std::size_t end) noexcept {
        return drop_at == none ? bytes{} : in.subspan(drop_at, (drop_end == none ? end : drop_end) - drop_at);
    };
    while (i < n) {
        if (s_ == state::data) {
            std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, n - i));
            r.kind = outcome::payload;
            r.at = stage::chunk_data;
            r.data = in.subspan(i, k);
            chunk_ -= k;
            i += k;
            if (chunk_ == 0) s_ = state::data_cr;
            r.consumed = i;
            offset_ += i;
            return r;
        }
        const char c = p[i];
        switch (s_) {
        case state::size_first:
        case state::size:
        case state::ext:
        case state::size_lf:
            if (++line_ > lim_.max_chunk_line) return fail(errc::http_bad_request, "chunk size line too long", i);
            break;
        case state::trailer_line:
        case state::trailer_name:
        case state::trailer_value:
        case state::trailer_lf:
        case state::trailer_end_lf:
            if (++trailer_ > lim_.max_trailer_bytes) return fail(errc::http_header_too_large, "trailers too large", i);
            break;
        default:
            break;
        }
        switch (s_) {
        case state::size_first: {
            unsigned v = hex_value(c);
            if (v > 15) return fail(errc::http_bad_request, "invalid chunk size", i);
            chunk_ = v;
            s_ = state::size;
            break;
        }
        case state::size: {
            unsigned v = hex_value(c);
            if (v <= 15) {
                if (chunk_ >> 60) return fail(errc::http_body_too_large, "chunk size overflow", i);
                chunk_ = (chunk_ << 4) | v;
            } else if (c == '\r') {
                s_ = state::size_lf;
            } else if (c == ';') {
                s_ = state::ext;
            } else if (is_ows(c)) {
                // RFC 9112 allows BWS before ";", llhttp does not: neither do we (a server that
                // reads "5 " differently from us would see other chunk boundaries).
                return fail(errc::http_bad_request, "whitespace after chunk size", i);
            } else {
                return fail(errc::http_bad_request, c == '\n' ? "bare LF" : "invalid chunk size", i);
            }
            break;
        }
        case state::ext:
            // Extensions are skipped: visible ASCII, SP and HTAB, up to the line limit.
            if (c == '\r') s_ = state::size_lf;
            else if (is_special(c)) return fail(errc::http_bad_request, c == '\n' ? "bare LF" : "control character in chunk extension", i);
            else if (static_cast<unsigned char>(c) >= 0x80) return fail(errc::http_bad_request, "obs-text in chunk extension", i);
            break;
        case state::size_lf:
            if (c != '\n') return fail(errc::http_bad_request, "bare CR", i);
            // Check the announced size before accepting any of its data.
            if (chunk_ > lim_.max_body || total_ > lim_.max_body - chunk_)
                return fail(errc::http_body_too_large, "chunked body over the body limit", i);
            total_ += chunk_;
            line_ = 0;
            if (chunk_ == 0) {
                s_ = state::trailer_line;
                trailer_ = 0;
            } else {
                s_ = state::data;
            }
            break;
        case state::data_cr:
            if (c != '\r') return fail(errc::http_bad_request, "missing CRLF after chunk data", i);
            s_ = state::data_lf;
            break;
        case state::data_lf:
            if (c != '\n') return fail(errc::http_bad_request, "missing CRLF after chunk data", i);
            s_ = state::size_first;
            break;
        case state::trailer_line:
            if (c == '\r') {
                s_ = state::trailer_end_lf;
                if (drop_at != none) drop_end = i;
            } else if (is_tchar(c)) {
                s_ = state::trailer_name;
                if (drop_at == none) drop_at = i;
                tname_len_ = 0;
                tname_[tname_len_++] = lower_ascii(c);
            } else {
                return fail(errc::http_bad_request, is_ows(c) ? "obs-fold in trailer" : c == '\n' ? "bare LF" : "invalid trailer field", i);
            }
            break;
        case state::trailer_name:
            if (c == ':') {
                s_ = state::trailer_value;
                if (tname_len_ <= sizeof tname_ && framing_field(std::string_view(tname_, tname_len_)))
                    return fail(errc::http_bad_request, "framing field in trailer", i);
            } else if (!is_tchar(c)) {
                return fail(errc::http_bad_request, is_ows(c) ? "whitespace before colon" : "invalid trailer field name", i);
            } else if (tname_len_ < sizeof tname_) {
                tname_[tname_len_++] = lower_ascii(c);
            } else {
                tname_len_ = sizeof tname_ + 1;  // longer than any name we look for
            }
            break;
        case state::trailer_value:
            if (c == '\r') s_ = state::trailer_lf;
            else if (is_special(c)) return fail(errc::http_bad_request, c == '\n' ? "bare LF" : "control character in trailer", i);
            break;
        case state::trailer_lf:
            if (c != '\n') return fail(errc::http_bad_request, "bare CR", i);
            s_ = state::trailer_line;
            break;
        case state::trailer_end_lf:
            if (c != '\n') return fail(errc::http_bad_request, "bare CR", i);
            s_ = state::done;
            ++i;
            offset_ += i;
            r.kind = outcome::done;
            r.at = stage::done;
            r.consumed = i;
            r.dropped = dropped(i);
            return r;
        case state::data:
        case state::done:
        case state::failed:
            break;  // handled above
        }
        ++i;
    }
    offset_ += n;
    r.kind = outcome::need_more;
    r.consumed = n;
    r.at = where();
    r.dropped = dropped(n);
    return r;
}

progress chunked_decoder::pass_through(bytes in) noexcept {
    std::size_t used = 0;
    for (;;) {
        progress r = decode(in.subspan(used));
        used += r.consumed;
        if (r.kind == outcome::payload) continue;
        // Only the last step can reach the trailer section; its `dropped` views `in` already.
        r.consumed = used;
        r.data = {};
        return r;
    }
}

// ---- body_reader --------------------------------------------------------------------------------

void body_reader::start(framing f) noexcept {
    f_ = f;
    length_.reset(f.kind == body_kind::content_length ? f.length : 0);
    chunked_.reset();
    read_ = 0;
    closed_ = false;
    failed_ = false;
}

bool body_reader::done() const noexcept {
    switch (f_.kind) {
    case body_kind::none: return true;
    case body_kind::content_length: return length_.done();
    case body_kind::chunked: return chunked_.done();
    case body_kind::until_close: return closed_ && !failed_;
    }
    return false;
}

progress body_reader::until_close(bytes in, bool deliver) noexcept {
    progress r;
    r.at = stage::body;
    if (failed_ || in.size() > lim_.max_body - std::min(read_, lim_.max_body)) {
        failed_ = true;
        r.kind = outcome::failed;
        // The offset is that of the first byte over the limit, whatever the split of the input.
        r.err = error(errc::http_body_too_large, "body over the body limit",
                      static_cast<std::uint32_t>(std::min<std::uint64_t>(lim_.max_body, UINT32_MAX)));
        return r;
    }
    read_ += in.size();
    r.consumed = in.size();
    if (deliver && !in.empty()) {
        r.kind = outcome::payload;
        r.data = in;
    } else {
        r.kind = outcome::need_more;
    }
    return r;
}

progress body_reader::decode(bytes in) noexcept {
    switch (f_.kind) {
    case body_kind::none: break;
    case body_kind::content_length: return length_.decode(in);
    case body_kind::chunked: return chunked_.decode(in);
    case body_kind::until_close: return until_close(in, true);
    }
    progress r;
    r.kind = outcome::done;
    r.at = stage::done;
    return r;
}

progress body_reader::pass_through(bytes in) noexcept {
    switch (f_.kind) {
    case body_kind::none: break;
    case body_kind::content_length: return length_.pass_through(in);
    case body_kind::chunked: return chunked_.pass_through(in);
    case body_kind::until_close: return until_close(in, false);
    }
    progress r;
    r.kind = outcome::done;
    r.at = stage::done;
    return r;
}

progress body_reader::finish() noexcept {
    progress r;
    if (f_.kind == body_kind::until_close && !failed_) closed_ = true;
    if (done()) {
        r.kind = outcome::done;
        r.at = stage::done;
        return r;
    }
    r.kind = outcome::failed;
    r.at = f_.kind == body_kind::chunked ? stage::chunk_data : stage::body;
    r.err = error(errc::closed, "truncated body");
    return r;
}

}  // namespace ferry::http1
