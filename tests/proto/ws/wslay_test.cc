// Differential tests against wslay, an independent RFC 6455 implementation (SPEC §6):
//   - frames our encoder writes are read by wslay (event and frame APIs) with identical results;
//   - frames wslay writes are read by our decoder identically;
//   - invalid input makes both close with the same code.
// Messages are randomised from a fixed seed; sizes include 0, 125, 126, 65535, 65536 and 1 MiB.
#include <gtest/gtest.h>
#include <wslay/wslay.h>
#include <zlib.h>

#include <algorithm>
#include <random>
#include <set>

#include "util.hh"

using namespace ws_test;

namespace {

struct wmsg {
    std::uint8_t rsv = 0;
    std::uint8_t opcode = 0;
    std::string data;
    std::uint16_t status = 0;
};

// One wslay endpoint driven in memory: `feed` gives it bytes (read in random-sized pieces),
// `drain` returns what it wrote.
class wslay_peer {
public:
    explicit wslay_peer(role r, std::uint32_t seed = 1) : rng_(seed) {
        wslay_event_callbacks cb{};
        cb.recv_callback = &wslay_peer::on_recv;
        cb.send_callback = &wslay_peer::on_send;
        cb.genmask_callback = &wslay_peer::on_genmask;
        cb.on_msg_recv_callback = &wslay_peer::on_msg;
        int rc = r == role::server ? wslay_event_context_server_init(&ctx_, &cb, this)
                                   : wslay_event_context_client_init(&ctx_, &cb, this);
        EXPECT_EQ(rc, 0);
        wslay_event_config_set_max_recv_msg_length(ctx_, std::uint64_t(1) << 30);
    }
    ~wslay_peer() { wslay_event_context_free(ctx_); }
    wslay_peer(const wslay_peer&) = delete;
    wslay_peer& operator=(const wslay_peer&) = delete;

    wslay_event_context_ptr ctx() { return ctx_; }
    void allow_rsv1() { wslay_event_config_set_allowed_rsv_bits(ctx_, WSLAY_RSV1_BIT); }
    void max_message(std::uint64_t n) { wslay_event_config_set_max_recv_msg_length(ctx_, n); }
    // Largest piece handed to wslay per read (random 1..max otherwise).
    void read_whole() { chunk_max_ = 0; }

    // Returns wslay_event_recv's result once all input is consumed or reading stopped.
    int feed(std::string_view bytes) {
        in_.append(bytes);
        int rc = 0;
        while (in_off_ < in_.size() && wslay_event_get_read_enabled(ctx_)) {
            std::size_t before = in_off_;
            rc = wslay_event_recv(ctx_);
            if (rc != 0 || in_off_ == before) break;
        }
        return rc;
    }
    std::string drain() {
        EXPECT_EQ(wslay_event_send(ctx_), 0);
        std::string s;
        s.swap(out_);
        return s;
    }
    void queue(std::uint8_t op, std::string_view data, std::uint8_t rsv = 0) {
        wslay_event_msg m{op, reinterpret_cast<const std::uint8_t*>(data.data()), data.size()};
        ASSERT_EQ(wslay_event_queue_msg_ex(ctx_, &m, rsv), 0);
    }
    // A fragmented message whose frames have the given payload sizes.
    void queue_fragmented(std::uint8_t op, std::string data, std::vector<std::size_t> sizes) {
        auto* src = new frag_source{std::move(data), std::move(sizes), 0, 0};
        sources_.emplace_back(src);
        wslay_event_fragmented_msg m{};
        m.opcode = op;
        m.source.data = src;
        m.read_callback = &wslay_peer::on_read_fragment;
        ASSERT_EQ(wslay_event_queue_fragmented_msg(ctx_, &m), 0);
    }
    const std::vector<wmsg>& received() const { return got_; }
    std::uint16_t status_sent() { return wslay_event_get_status_code_sent(ctx_); }

private:
    struct frag_source {
        std::string data;
        std::vector<std::size_t> sizes;
        std::size_t off;
        std::size_t next;
    };

    static ssize_t on_recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len, int, void* ud) {
        auto* self = static_cast<wslay_peer*>(ud);
        if (self->in_off_ == self->in_.size()) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        std::size_t k = std::min(len, self->in_.size() - self->in_off_);
        if (self->chunk_max_) k = std::min(k, std::size_t(1 + self->rng_() % self->chunk_max_));
        std::memcpy(buf, self->in_.data() + self->in_off_, k);
        self->in_off_ += k;
        return static_cast<ssize_t>(k);
    }
    static ssize_t on_send(wslay_event_context_ptr, const std::uint8_t* data, std::size_t len, int, void* ud) {
        static_cast<wslay_peer*>(ud)->out_.append(reinterpret_cast<const char*>(data), len);
        return static_cast<ssize_t>(len);
    }
    static int on_genmask(wslay_event_context_ptr, std::uint8_t* buf, std::size_t len, void* ud) {
        auto* self = static_cast<wslay_peer*>(ud);
        for (std::size_t i = 0; i < len; ++i) buf[i] = static_cast<std::uint8_t>(self->rng_());
        return 0;
    }
    static void on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* a, void* ud) {
        wmsg m;
        m.rsv = a->rsv;
        m.opcode = a->opcode;
        if (a->msg_length) m.data.assign(reinterpret_cast<const char*>(a->msg), a->msg_length);
        m.status = a->status_code;
        static_cast<wslay_peer*>(ud)->got_.push_back(std::move(m));
    }
    static ssize_t on_read_fragment(wslay_event_context_ptr, std::uint8_t* buf, std::size_t len,
                                    const wslay_event_msg_source* source, int* eof, void*) {
        auto* s = static_cast<frag_source*>(source->data);
        std::size_t want = s->next < s->sizes.size() ? s->sizes[s->next] : s->data.size() - s->off;
        std::size_t k = std::min({want, len, s->data.size() - s->off});
        std::memcpy(buf, s->data.data() + s->off, k);
        s->off += k;
        ++s->next;
        if (s->off == s->data.size()) *eof = 1;
        return static_cast<ssize_t>(k);
    }

    wslay_event_context_ptr ctx_ = nullptr;
    std::mt19937 rng_;
    std::string in_;
    std::size_t in_off_ = 0;
    std::size_t chunk_max_ = 5000;
    std::string out_;
    std::vector<wmsg> got_;
    std::vector<std::unique_ptr<frag_source>> sources_;
};

std::vector<std::size_t> sizes_under_test(std::mt19937& rng) {
    std::vector<std::size_t> s = {0, 1, 125, 126, 127, 65535, 65536, 65537, 1u << 20};
    for (int i = 0; i < 40; ++i) s.push_back(rng() % (i % 4 == 0 ? 200000 : 2000));
    std::shuffle(s.begin(), s.end(), rng);
    return s;
}

role other(role r) { return r == role::server ? role::client : role::server; }

}  // namespace

TEST(WsWslay, OurEncoderWslayReads) {
    std::mt19937 rng(2024);
    for (role ours : {role::server, role::client}) {
        counter_mask km;
        encoder enc(ours, std::nullopt, {}, km.source());
        wslay_peer peer(other(ours), 7);
        buffer_chain out;
        std::vector<wmsg> want;
        int n = 0;
        for (std::size_t size : sizes_under_test(rng)) {
            const bool text = ++n % 3 == 0;
            std::string m = text ? random_text(rng, size).substr(0, size) : random_bytes(rng, size);
            if (text) {
                // random_text may have cut a code point: keep whole ones only.
                while (!valid_utf8(as_bytes(m))) m.pop_back();
            }
            const auto op = text ? opcode::text : opcode::binary;
            send_options o;
            o.fragment_size = n % 4 == 1 ? 1 + rng() % 3000 : 0;
            if (n % 2) {
                ASSERT_TRUE(enc.send(out, op, slice::copy_of(as_bytes(m)), o));
            } else {
                ASSERT_TRUE(enc.send_copy(out, op, as_bytes(m), o));
            }
            want.push_back({0, static_cast<std::uint8_t>(op), m, 0});
            if (n % 5 == 0) {
                std::string p = random_bytes(rng, rng() % 126);
                ASSERT_TRUE(enc.ping(out, as_bytes(p)));
                want.push_back({0, WSLAY_PING, p, 0});
            }
            if (n % 7 == 0) {
                std::string p = random_bytes(rng, rng() % 126);
                ASSERT_TRUE(enc.pong(out, as_bytes(p)));
                want.push_back({0, WSLAY_PONG, p, 0});
            }
        }
        // A message in parts with control frames between the parts.
        ASSERT_TRUE(enc.send_part_copy(out, opcode::text, as_bytes(std::string_view("stream")), fin::no));
        ASSERT_TRUE(enc.ping(out, as_bytes(std::string_view("mid"))));
        ASSERT_TRUE(enc.send_part(out, opcode::text, slice::copy_of(as_bytes(std::string(70000, 'x'))), fin::no));
        ASSERT_TRUE(enc.send_part_copy(out, opcode::text, as_bytes(std::string_view("end")), fin::yes));
        want.push_back({0, WSLAY_PING, "mid", 0});
        want.push_back({0, WSLAY_TEXT_FRAME, "stream" + std::string(70000, 'x') + "end", 0});
        // The close goes in a second batch: wslay sends a close reply ahead of queued pongs
        // and nothing after it, so its pongs are collected first.
        buffer_chain closing;
        ASSERT_TRUE(enc.close(closing, 4321, "all done"));
        want.push_back({0, WSLAY_CONNECTION_CLOSE, close_payload(4321, "all done"), 4321});

        EXPECT_EQ(peer.feed(out.to_string()), 0);
        std::string replies = peer.drain();
        EXPECT_EQ(peer.feed(closing.to_string()), 0);
        replies += peer.drain();
        const auto& got = peer.received();
        ASSERT_EQ(got.size(), want.size()) << (ours == role::server ? "server" : "client");
        for (std::size_t i = 0; i < want.size(); ++i) {
            EXPECT_EQ(got[i].opcode, want[i].opcode) << i;
            EXPECT_EQ(got[i].rsv, 0);
            ASSERT_EQ(got[i].data, want[i].data) << i;
            EXPECT_EQ(got[i].status, want[i].status) << i;
        }
        EXPECT_TRUE(wslay_event_get_close_received(peer.ctx()));
        EXPECT_EQ(wslay_event_get_status_code_received(peer.ctx()), 4321);
        // wslay answered the pings and the close; our decoder reads its replies.
        decoder dec(ours);
        auto back = decode_all(dec, replies);
        ASSERT_EQ(back.error, errc::ok) << back.error_detail;
        EXPECT_EQ(back.pongs.size(), static_cast<std::size_t>(std::count_if(
                                         want.begin(), want.end(), [](const wmsg& m) { return m.opcode == WSLAY_PING; })));
        EXPECT_TRUE(back.closed);
        EXPECT_EQ(back.close_code, 4321);
    }
}

TEST(WsWslay, OurFramesAtTheFrameLevel) {
    // wslay's frame API reports each frame's header fields: every length form, FIN, opcode and
    // the mask bit must be exactly what we meant.
    struct expect_frame {
        bool fin;
        std::uint8_t opcode;
        std::uint64_t len;
    };
    for (role ours : {role::server, role::client}) {
        counter_mask km;
        encoder enc(ours, std::nullopt, {}, km.source());
        buffer_chain out;
        std::vector<expect_frame> want;
        for (std::size_t n : {0, 125, 126, 65535, 65536}) {
            ASSERT_TRUE(enc.send_copy(out, opcode::binary, as_bytes(std::string(n, 'b'))));
            want.push_back({true, WSLAY_BINARY_FRAME, n});
        }
        send_options o;
        o.fragment_size = 100;
        ASSERT_TRUE(enc.send_copy(out, opcode::text, as_bytes(std::string(250, 't')), o));
        want.push_back({false, WSLAY_TEXT_FRAME, 100});
        want.push_back({false, WSLAY_CONTINUATION_FRAME, 100});
        want.push_back({true, WSLAY_CONTINUATION_FRAME, 50});
        ASSERT_TRUE(enc.close(out, 1000));
        want.push_back({true, WSLAY_CONNECTION_CLOSE, 2});

        struct reader {
            std::string data;
            std::size_t off = 0;
        } rd{out.to_string()};
        wslay_frame_callbacks cb{};
        cb.recv_callback = [](std::uint8_t* buf, std::size_t len, int, void* ud) -> ssize_t {
            auto* r = static_cast<reader*>(ud);
            if (r->off == r->data.size()) return WSLAY_ERR_WANT_READ;
            std::size_t k = std::min(len, r->data.size() - r->off);
            std::memcpy(buf, r->data.data() + r->off, k);
            r->off += k;
            return static_cast<ssize_t>(k);
        };
        cb.send_callback = [](const std::uint8_t*, std::size_t len, int, void*) -> ssize_t {
            return static_cast<ssize_t>(len);
        };
        wslay_frame_context_ptr fctx;
        ASSERT_EQ(wslay_frame_context_init(&fctx, &cb, &rd), 0);
        std::vector<expect_frame> got;
        std::uint64_t done_in_frame = 0;
        for (int guard = 0; guard < 100000 && got.size() < want.size(); ++guard) {
            wslay_frame_iocb io{};
            ssize_t r = wslay_frame_recv(fctx, &io);
            if (r < 0) {
                ASSERT_EQ(r, WSLAY_ERR_WANT_READ);
                continue;
            }
            EXPECT_EQ(io.mask, ours == role::client ? 1 : 0);
            EXPECT_EQ(io.rsv, 0);
            done_in_frame += io.data_length;
            if (done_in_frame == io.payload_length) {
                got.push_back({io.fin != 0, io.opcode, io.payload_length});
                done_in_frame = 0;
            }
        }
        wslay_frame_context_free(fctx);
        ASSERT_EQ(got.size(), want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            EXPECT_EQ(got[i].fin, want[i].fin) << i;
            EXPECT_EQ(got[i].opcode, want[i].opcode) << i;
            EXPECT_EQ(got[i].len, want[i].len) << i;
        }
    }
}

TEST(WsWslay, WslayWritesWeRead) {
    std::mt19937 rng(77);
    for (role ours : {role::server, role::client}) {
        wslay_peer peer(other(ours), 9);
        std::string wire;  // drained after each message: wslay sends control frames first
        std::vector<message> want;
        std::vector<std::string> pings;
        int n = 0;
        for (std::size_t size : sizes_under_test(rng)) {
            const bool text = ++n % 2 == 0;
            std::string m = text ? random_text(rng, size) : random_bytes(rng, size);
            const std::uint8_t op = text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME;
            if (n % 3 == 0 && size > 0) {
                std::vector<std::size_t> cuts;
                std::size_t left = m.size();
                while (left > 0) {
                    std::size_t k = std::min<std::size_t>(left, 1 + rng() % 3000);
                    cuts.push_back(k);
                    left -= k;
                }
                peer.queue_fragmented(op, m, cuts);
            } else {
                peer.queue(op, m);
            }
            want.push_back({text ? opcode::text : opcode::binary, m});
            if (n % 4 == 0) {
                pings.push_back(random_bytes(rng, rng() % 126));
                peer.queue(WSLAY_PING, pings.back());
            }
            wire += peer.drain();
        }
        ASSERT_EQ(wslay_event_queue_close(peer.ctx(), 1001, reinterpret_cast<const std::uint8_t*>("bye"), 3), 0);
        wire += peer.drain();
        for (int chunking = 0; chunking < 3; ++chunking) {
            decoder dec(ours);
            auto got = decode_chunks(dec, wire, [&](std::size_t) -> std::size_t {
                return chunking == 0 ? wire.size() : chunking == 1 ? 1 + rng() % 7 : 1 + rng() % 70000;
            });
            ASSERT_EQ(got.error, errc::ok) << got.error_detail;
            ASSERT_EQ(got.messages.size(), want.size());
            for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got.messages[i], want[i]) << i;
            // wslay sends queued control frames first, even between a fragmented message's frames.
            std::multiset<std::string> a(got.pings.begin(), got.pings.end()), b(pings.begin(), pings.end());
            EXPECT_EQ(a, b);
            EXPECT_TRUE(got.closed);
            EXPECT_EQ(got.close_code, 1001);
            EXPECT_EQ(got.close_reason, "bye");
            if (chunking == 1) break;  // byte-ish feeding of a 1 MiB stream once is enough
        }
    }
}

TEST(WsWslay, CompressedMessagesCarryRsv1BothWays) {
    // wslay does not compress, but passes RSV1 and the payload through when allowed: our
    // compressed frames must arrive as RSV1 messages whose payload zlib inflates to the
    // original, and RSV1 messages wslay writes from zlib output must inflate in our decoder.
    deflate_config cfg;
    cfg.enabled = true;
    cfg.min_size = 0;
    deflate_params p;
    p.server_no_context_takeover = true;  // each message stands alone for the zlib check below
    counter_mask km;
    encoder enc(role::server, p, cfg, km.source());
    wslay_peer peer(role::client, 3);
    peer.allow_rsv1();
    buffer_chain out;
    const std::string m = "compress me, compress me, compress me " + std::string(3000, 'z');
    ASSERT_TRUE(enc.send_copy(out, opcode::text, as_bytes(m)));
    EXPECT_EQ(peer.feed(out.to_string()), 0);
    ASSERT_EQ(peer.received().size(), 1u);
    const wmsg& got = peer.received()[0];
    EXPECT_EQ(got.rsv, WSLAY_RSV1_BIT);
    EXPECT_LT(got.data.size(), m.size() / 10);
    // Inflate what wslay received, with the tail appended (RFC 7692 §7.2.2).
    z_stream z{};
    ASSERT_EQ(inflateInit2(&z, -15), Z_OK);
    std::string in = got.data + std::string("\x00\x00\xff\xff", 4);
    std::string plain(m.size() + 100, '\0');
    z.next_in = reinterpret_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(plain.data());
    z.avail_out = static_cast<uInt>(plain.size());
    ASSERT_EQ(inflate(&z, Z_SYNC_FLUSH), Z_OK);
    plain.resize(plain.size() - z.avail_out);
    inflateEnd(&z);
    EXPECT_EQ(plain, m);
    // The other way: wslay as the client sends zlib output with RSV1; our server inflates it.
    wslay_peer wclient(role::client, 4);
    z_stream d{};
    ASSERT_EQ(deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::string packed(m.size() + 100, '\0');
    d.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(m.data()));
    d.avail_in = static_cast<uInt>(m.size());
    d.next_out = reinterpret_cast<Bytef*>(packed.data());
    d.avail_out = static_cast<uInt>(packed.size());
    ASSERT_EQ(deflate(&d, Z_SYNC_FLUSH), Z_OK);
    packed.resize(packed.size() - d.avail_out - 4);  // strip 00 00 FF FF
    deflateEnd(&d);
    wclient.allow_rsv1();
    wclient.queue(WSLAY_TEXT_FRAME, packed, WSLAY_RSV1_BIT);
    decoder dec(role::server, {}, p);
    auto back = decode_all(dec, wclient.drain());
    ASSERT_EQ(back.error, errc::ok) << back.error_detail;
    ASSERT_EQ(back.messages.size(), 1u);
    EXPECT_EQ(back.messages[0].data, m);
}

TEST(WsWslay, CloseCodesBothWays) {
    // Every code both implementations accept on the wire, with and without a reason, in both
    // directions and both roles.
    std::vector<std::uint16_t> codes = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                        3000, 3999, 4000, 4999};
    for (std::uint16_t code : codes) {
        for (std::string reason : {std::string(), std::string("r\xc3\xa9" "ason"), std::string(123, 'z')}) {
            for (role ours : {role::server, role::client}) {
                // ours -> wslay
                counter_mask km;
                encoder enc(ours, std::nullopt, {}, km.source());
                buffer_chain out;
                ASSERT_TRUE(enc.close(out, code, reason));
                wslay_peer w(other(ours), code);
                EXPECT_EQ(w.feed(out.to_string()), 0);
                EXPECT_EQ(wslay_event_get_status_code_received(w.ctx()), code);
                ASSERT_EQ(w.received().size(), 1u);
                EXPECT_EQ(w.received()[0].data, close_payload(code, reason));
                // wslay -> ours
                wslay_peer w2(other(ours), code + 1u);
                ASSERT_EQ(wslay_event_queue_close(w2.ctx(), code, reinterpret_cast<const std::uint8_t*>(reason.data()),
                                                  reason.size()), 0);
                decoder dec(ours);
                auto got = decode_all(dec, w2.drain());
                ASSERT_EQ(got.error, errc::ok) << got.error_detail;
                EXPECT_TRUE(got.closed);
                EXPECT_EQ(got.close_code, code);
                EXPECT_EQ(got.close_reason, reason);
            }
        }
    }
    // An empty close both ways: wslay reports 1005 ("no status"), as we do.
    decoder dec(role::client);
    wslay_peer w(role::server);
    ASSERT_EQ(wslay_event_queue_close(w.ctx(), 0, nullptr, 0), 0);
    auto got = decode_all(dec, w.drain());
    EXPECT_TRUE(got.closed);
    EXPECT_EQ(got.close_code, close_code::no_status);
    counter_mask km;
    encoder enc(role::client, std::nullopt, {}, km.source());
    buffer_chain out;
    ASSERT_TRUE(enc.close(out, close_code::no_status));
    wslay_peer w2(role::server);
    EXPECT_EQ(w2.feed(out.to_string()), 0);
    EXPECT_TRUE(wslay_event_get_close_received(w2.ctx()));
    EXPECT_EQ(wslay_event_get_status_code_received(w2.ctx()), 1005);
}

TEST(WsWslay, SameCloseCodeForBadInput) {
    // Both implementations read the same invalid client stream; both must fail it and the close
    // wslay sends must equal ours. `wslay_code` differs from ours only where wslay rejects a
    // frame in its frame layer: it then sends an empty close (1005) where we say 1002.
    struct tcase {
        const char* what;
        std::string wire;
        std::uint16_t ours;
        std::uint16_t wslay_code;
    };
    std::string msb = "\x82\xff";
    msb += std::string("\x80\x00\x00\x00\x00\x00\x00\x01", 8) + "abcdx";
    const std::vector<tcase> cases = {
        {"unmasked client frame", sframe(2, "x"), 1002, 1002},
        {"reserved opcode 3", cframe(3, "x"), 1002, 1002},
        {"reserved opcode 0xB", cframe(0xB, ""), 1002, 1002},
        {"RSV1 without extension", cframe(2, "x", true, 4), 1002, 1002},
        {"RSV2", cframe(2, "x", true, 2), 1002, 1002},
        {"RSV3", cframe(2, "x", true, 1), 1002, 1002},
        {"continuation first", cframe(0, "x"), 1002, 1002},
        {"new message inside one", cframe(1, "a", false) + cframe(2, "b"), 1002, 1002},
        {"invalid UTF-8", cframe(1, "\xc3\x28"), 1007, 1007},
        {"surrogate", cframe(1, "\xed\xa0\x80"), 1007, 1007},
        {"UTF-8 cut at message end", cframe(1, "ab\xe2\x82"), 1007, 1007},
        {"UTF-8 across fragments then bad", cframe(1, "\xe2", false) + cframe(0, "\x82\x28"), 1007, 1007},
        {"close code 1005", cframe(8, close_payload(1005)), 1002, 1002},
        {"close code 999", cframe(8, close_payload(999)), 1002, 1002},
        {"close code 5000", cframe(8, close_payload(5000)), 1002, 1002},
        {"close reason bad UTF-8", cframe(8, close_payload(1000, "\xff")), 1007, 1007},
        {"too big", cframe(2, std::string(2000, 'x')), 1009, 1009},
        {"too big across fragments", cframe(2, std::string(600, 'x'), false) + cframe(0, std::string(600, 'x')), 1009, 1009},
        // Rejected by wslay's frame layer:
        {"fragmented ping", cframe(9, "p", false), 1002, 1005},
        {"126-byte ping", cframe(9, std::string(126, 'p')), 1002, 1005},
        {"non-minimal 16-bit length", raw_frame(2, "x", true, k1, 0, len_form::b16), 1002, 1005},
        {"non-minimal 64-bit length", raw_frame(2, "x", true, k1, 0, len_form::b64), 1002, 1005},
        {"64-bit length with MSB", msb, 1002, 1005},
    };
    for (const auto& tc : cases) {
        wslay_peer w(role::server);
        w.max_message(1000);
        w.read_whole();
        w.feed(tc.wire);
        std::string reply = w.drain();
        limits lim;
        lim.max_frame_payload = 1000;
        lim.max_message = 1000;
        codec ours(role::server, codec_options{lim});
        std::vector<std::byte> buf(tc.wire.size());
        std::memcpy(buf.data(), tc.wire.data(), tc.wire.size());
        mut_bytes in(buf);
        buffer_chain out;
        errc err = errc::ok;
        for (;;) {
            auto ev = ours.next(in, out);
            if (!ev) {
                err = ev.code();
                break;
            }
            if (ev->type == event_type::need_more) break;
        }
        ASSERT_NE(err, errc::ok) << tc.what;
        EXPECT_EQ(ours.sent_close_code(), tc.ours) << tc.what;
        EXPECT_EQ(w.status_sent(), tc.wslay_code) << tc.what;
        if (tc.ours == tc.wslay_code) {
            // The close frames on the wire are the same too (code, no reason, unmasked).
            EXPECT_EQ(out.to_string(), reply) << tc.what;
        }
    }
}

TEST(WsWslay, KnownDivergences) {
    // Where we differ from wslay on purpose (documented in frame.hh / decoder.hh):
    //  - 1012..1014 are registered close codes; wslay rejects them, we accept them.
    //  - a 1-byte close payload is malformed (RFC 6455 §5.5.1 requires a 2-byte code first);
    //    wslay treats it as "no status code", we fail with 1002.
    {
        wslay_peer w(role::server);
        w.feed(cframe(8, close_payload(1012)));
        w.drain();
        EXPECT_EQ(w.status_sent(), 1002);
        decoder d(role::server);
        auto got = decode_all(d, cframe(8, close_payload(1012)));
        EXPECT_EQ(got.error, errc::ok);
        EXPECT_EQ(got.close_code, 1012);
    }
    {
        wslay_peer w(role::server);
        w.feed(cframe(8, "\x03"));
        w.drain();
        EXPECT_EQ(w.status_sent(), 1005);  // answered with an empty close
        decoder d(role::server);
        EXPECT_EQ(decode_all(d, cframe(8, "\x03")).error, errc::ws_protocol);
    }
}
