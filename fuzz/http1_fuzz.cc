// Fuzz target `http1`: request parser, response parser, body framing (chunked decode and
// pass-through) and the head writer, with differential invariants:
//   * a head fed in the fuzzer's pieces (growing prefixes) gives exactly the answer of the whole
//     input: same outcome, consumed count, error code/offset/stage, and the same views;
//   * a body decoded in pieces gives the same payload, end and error as decoded whole, and
//     pass-through agrees with decode on where the message ends;
//   * a parsed head written back (no stripping) parses again to the same head;
//   * the trailer filter: what pass-through says to forward (consumed minus `dropped`) is the
//     same for every split, `dropped` lies within the consumed bytes, and the forwarded body is
//     itself a complete chunked body with the same payload and no trailer field left.
//
// Input layout (STYLE 12): byte 0 selects limits and the request method the response answers;
// the rest is a list of chunks, each a length byte followed by that many bytes. The chunks are
// concatenated into one stream; the chunk boundaries are the split points.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proto/http1/http1.hh"

using namespace ferry;
using namespace ferry::http1;

namespace {

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "http1_fuzz invariant failed: %s (line %d)\n", #c, __LINE__); \
            std::abort();                                                         \
        }                                                                         \
    } while (0)

bool same(const progress& a, const progress& b) {
    return a.kind == b.kind && a.consumed == b.consumed && a.err.code == b.err.code &&
           a.err.offset == b.err.offset && a.at == b.at;
}

bool same_view(std::string_view a, std::string_view b) { return a.data() == b.data() && a.size() == b.size(); }
bool same_text(std::string_view a, std::string_view b) { return a == b; }

template <class Eq>
bool same_head(const message_head& a, const message_head& b, Eq eq) {
    if (a.ver != b.ver || a.body.kind != b.body.kind || a.body.length != b.body.length ||
        a.keep_alive != b.keep_alive || a.upgrade != b.upgrade || a.headers.size() != b.headers.size())
        return false;
    for (std::size_t i = 0; i < a.headers.size(); ++i)
        if (!eq(a.headers[i].name, b.headers[i].name) || !eq(a.headers[i].value, b.headers[i].value)) return false;
    return true;
}

limits pick_limits(unsigned sel) {
    limits l;
    switch (sel & 3) {
    case 0: break;
    case 1:
        l.max_head_bytes = 256;
        l.max_start_line = 64;
        l.max_headers = 6;
        l.max_body = 300;
        l.max_chunk_line = 12;
        l.max_trailer_bytes = 40;
        break;
    case 2:
        l.max_head_bytes = 48;
        l.max_start_line = 20;
        l.max_headers = 2;
        l.max_body = 16;
        l.max_chunk_line = 5;
        l.max_trailer_bytes = 8;
        break;
    case 3:
        l.max_body = UINT64_MAX;
        break;
    }
    return l;
}

// Feeds growing prefixes of `stream` ending at each cut, then the whole.
template <class Parser>
progress feed_split(Parser& ps, std::string_view stream, const std::vector<std::size_t>& cuts) {
    ps.reset();
    for (std::size_t c : cuts) {
        progress p = ps.parse(as_bytes(stream.substr(0, c)));
        if (!p.need_more()) return p;
    }
    return ps.parse(as_bytes(stream));
}

struct body_run {
    progress last;
    std::string payload;
    std::string forwarded;  // pass-through: the bytes a forwarder sends (trailer fields left out)
    std::size_t consumed = 0;
};

// Body framing over `in`, fed in the given pieces. decode=false uses pass_through.
body_run run_body(const framing& f, const limits& l, std::string_view in, const std::vector<std::size_t>& cuts,
                  bool decode) {
    body_reader r(l);
    r.start(f);
    body_run out;
    std::size_t pos = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(in.size());
    for (std::size_t end : ends) {
        if (end < pos || end > in.size()) continue;
        std::string_view piece = in.substr(pos, end - pos);
        std::size_t off = 0;
        for (;;) {
            progress p = decode ? r.decode(as_bytes(piece.substr(off))) : r.pass_through(as_bytes(piece.substr(off)));
            CHECK(p.consumed <= piece.size() - off);
            CHECK(p.data.size() <= p.consumed);
            if (!decode) CHECK(p.data.empty());
            if (!p.data.empty()) {
                // Payload is a view into this call's input.
                CHECK(reinterpret_cast<const char*>(p.data.data()) >= piece.data() + off);
                CHECK(reinterpret_cast<const char*>(p.data.data()) + p.data.size() <= piece.data() + piece.size());
                out.payload.append(as_string(p.data));
            }
            if (!decode && !p.failed()) {
                const std::string_view used = piece.substr(off, p.consumed);
                if (p.dropped.empty()) {
                    out.forwarded.append(used);
                } else {
                    // The trailer field lines: inside what this call consumed.
                    const char* d = reinterpret_cast<const char*>(p.dropped.data());
                    CHECK(d >= used.data() && d + p.dropped.size() <= used.data() + used.size());
                    const std::size_t at = static_cast<std::size_t>(d - used.data());
                    out.forwarded.append(used.substr(0, at));
                    out.forwarded.append(used.substr(at + p.dropped.size()));
                }
            }
            if (decode) CHECK(p.dropped.empty() || p.kind != outcome::payload);
            off += p.consumed;
            out.last = p;
            if (p.kind != outcome::payload) break;
        }
        pos += off;
        if (out.last.kind != outcome::need_more) break;
    }
    out.consumed = pos;
    return out;
}

void check_body(const framing& f, const limits& l, std::string_view rest, const std::vector<std::size_t>& cuts) {
    body_run whole = run_body(f, l, rest, {}, true);
    body_run split = run_body(f, l, rest, cuts, true);
    body_run pass = run_body(f, l, rest, cuts, false);
    CHECK(whole.last.kind == split.last.kind);
    CHECK(whole.last.err.code == split.last.err.code);
    CHECK(whole.last.err.offset == split.last.err.offset);
    CHECK(pass.last.kind == whole.last.kind);
    CHECK(pass.last.err.code == whole.last.err.code);
    if (!whole.last.failed()) {
        CHECK(whole.payload == split.payload);
        CHECK(whole.consumed == split.consumed);
        CHECK(pass.consumed == whole.consumed);
        CHECK(whole.payload.size() <= whole.consumed);
        if (f.kind == body_kind::content_length && whole.last.done()) CHECK(whole.payload.size() == f.length);
        CHECK(whole.payload.size() <= l.max_body);
        // The trailer filter does not depend on the split.
        body_run pass_whole = run_body(f, l, rest, {}, false);
        CHECK(pass_whole.forwarded == pass.forwarded);
        if (f.kind != body_kind::chunked) CHECK(pass.forwarded == rest.substr(0, pass.consumed));
        if (f.kind == body_kind::chunked && whole.last.done()) {
            // What is forwarded is a chunked body on its own: same payload, nothing after the
            // last chunk but its CRLF.
            limits big = l;
            big.max_body = UINT64_MAX;
            big.max_trailer_bytes = 2;
            body_run again = run_body(f, big, pass.forwarded, {}, true);
            CHECK(again.last.done());
            CHECK(again.consumed == pass.forwarded.size());
            CHECK(again.payload == whole.payload);
            CHECK(pass.forwarded.size() >= 5 && pass.forwarded.substr(pass.forwarded.size() - 4) == "\r\n\r\n");
            body_run repass = run_body(f, big, pass.forwarded, {}, false);
            CHECK(repass.forwarded == pass.forwarded);  // no trailer field was left to drop
        }
    }
}

std::vector<std::size_t> shift_cuts(const std::vector<std::size_t>& cuts, std::size_t by) {
    std::vector<std::size_t> out;
    for (std::size_t c : cuts)
        if (c > by) out.push_back(c - by);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const unsigned sel = data[0];
    const limits lim = pick_limits(sel);
    static const char* const methods[] = {"GET", "HEAD", "CONNECT", "POST"};
    const char* method = methods[(sel >> 2) & 3];
    const bool move_buffer = (sel >> 4) & 1;

    std::string stream;
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < size;) {
        std::size_t len = data[i++];
        len = std::min(len, size - i);
        stream.append(reinterpret_cast<const char*>(data + i), len);
        i += len;
        cuts.push_back(stream.size());
    }
    const std::string_view sv(stream);

    // ---- request head --------------------------------------------------------------------------
    {
        request_parser whole(lim), split(lim);
        progress pw = whole.parse(as_bytes(sv));
        progress ps = feed_split(split, sv, cuts);
        CHECK(same(pw, ps));
        CHECK(pw.consumed <= sv.size());
        if (pw.done()) {
            const request_head& a = whole.head();
            const request_head& b = split.head();
            CHECK(same_head(a, b, same_view));
            CHECK(same_view(a.method, b.method) && same_view(a.target, b.target) && same_view(a.host, b.host));
            CHECK(a.expect_continue == b.expect_continue);
            CHECK(pw.consumed <= lim.max_head_bytes);
            CHECK(a.headers.size() <= lim.max_headers);
            CHECK(a.size == pw.consumed);
            CHECK(a.body.kind != body_kind::until_close);
            check_body(a.body, lim, sv.substr(pw.consumed), shift_cuts(cuts, pw.consumed));

            // Written back without rewriting, it parses to the same head.
            buffer_chain out;
            rewrite keep;
            keep.strip_hop_by_hop = false;
            CHECK(write_head(out, a, keep));
            std::string again = out.to_string();
            limits big = lim;
            big.max_head_bytes = again.size() + 1;
            big.max_start_line = again.size();
            request_parser re(big);
            progress pr = re.parse(as_bytes(again));
            CHECK(pr.done());
            CHECK(pr.consumed == again.size());
            CHECK(same_head(a, re.head(), same_text));
            CHECK(a.method == re.head().method && a.target == re.head().target);

            // Stripped output is still well-formed.
            buffer_chain stripped;
            CHECK(write_head(stripped, a, rewrite{}));
        } else if (pw.failed()) {
            CHECK(status_for(pw.err.code) >= 400);
        }
        if (move_buffer && !cuts.empty()) {
            // A moved buffer (same bytes, new address) restarts and ends the same way.
            request_parser mv(lim);
            std::string first(sv.substr(0, cuts[0]));
            progress p1 = mv.parse(as_bytes(first));
            if (p1.need_more()) {
                std::string copy(sv);
                progress p2 = mv.parse(as_bytes(copy));
                CHECK(p2.kind == pw.kind && p2.consumed == pw.consumed && p2.err.code == pw.err.code &&
                      p2.err.offset == pw.err.offset);
            }
        }
    }

    // ---- response head -------------------------------------------------------------------------
    {
        response_parser whole(lim), split(lim);
        whole.set_request_method(method);
        split.set_request_method(method);
        progress pw = whole.parse(as_bytes(sv));
        progress ps = feed_split(split, sv, cuts);
        CHECK(same(pw, ps));
        if (pw.done()) {
            const response_head& a = whole.head();
            CHECK(same_head(a, split.head(), same_view));
            CHECK(a.status_code >= 100 && a.status_code <= 599);
            if (std::strcmp(method, "HEAD") == 0 || a.status_code < 200 || a.status_code == 204 || a.status_code == 304)
                CHECK(a.body.kind == body_kind::none);
            if (a.body.kind == body_kind::until_close) CHECK(!a.keep_alive);
            check_body(a.body, lim, sv.substr(pw.consumed), shift_cuts(cuts, pw.consumed));
            buffer_chain out;
            rewrite keep;
            keep.strip_hop_by_hop = false;
            CHECK(write_head(out, a, keep));
            std::string again = out.to_string();
            limits big = lim;
            big.max_head_bytes = again.size() + 1;
            big.max_start_line = again.size();
            response_parser re(big);
            re.set_request_method(method);
            CHECK(re.parse(as_bytes(again)).done());
            CHECK(same_head(a, re.head(), same_text));
            CHECK(a.status_code == re.head().status_code && a.reason == re.head().reason);
        }
    }

    // ---- chunked body straight from the stream ---------------------------------------------------
    check_body(framing{body_kind::chunked, 0}, lim, sv, cuts);
    {
        // Byte at a time agrees with whole (small inputs only, it is quadratic in calls).
        if (sv.size() <= 2048) {
            std::vector<std::size_t> every;
            for (std::size_t i = 1; i < sv.size(); ++i) every.push_back(i);
            body_run w = run_body(framing{body_kind::chunked, 0}, lim, sv, {}, true);
            body_run b = run_body(framing{body_kind::chunked, 0}, lim, sv, every, true);
            CHECK(w.last.kind == b.last.kind && w.last.err.code == b.last.err.code && w.last.err.offset == b.last.err.offset);
            if (!w.last.failed()) CHECK(w.payload == b.payload && w.consumed == b.consumed);
        }
    }

    // ---- helpers never crash on arbitrary text ------------------------------------------------------
    (void)has_token(sv, "upgrade");
    (void)is_hop_by_hop(sv.substr(0, sv.size() / 2), sv.substr(sv.size() / 2));
    return 0;
}
