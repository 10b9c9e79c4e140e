#include "proto/ssh/packet.hh"

#include <algorithm>
#include <cstring>

namespace ferry::ssh {

packet_layer::packet_layer(const packet_limits& lim, rng& r)
    : lim_(lim), rng_(r), tx_(make_null_cipher()), rx_(make_null_cipher()) {}

void packet_layer::set_send_cipher(std::unique_ptr<packet_cipher> c) noexcept {
    tx_ = std::move(c);
    tx_bytes_ = 0;
    tx_packets_ = 0;
}

void packet_layer::set_recv_cipher(std::unique_ptr<packet_cipher> c) noexcept {
    rx_ = std::move(c);
    rx_bytes_ = 0;
    rx_packets_ = 0;
}

std::size_t packet_layer::max_payload() const noexcept {
    // Worst case over every suite (64-byte HMAC-SHA2-512 tag, 16-byte blocks), not the current
    // one: a payload queued during a rekey must still fit under the next keys.
    constexpr std::size_t overhead = 4 + 1 + 64 + 4 + 16;
    return lim_.max_packet > overhead ? lim_.max_packet - overhead : 0;
}

status packet_layer::fill_padding(mut_bytes pad) {
    while (!pad.empty()) {
        if (pad_left_ == 0) {
            FERRY_TRY(r, rng_.fill(pad_pool_));
            pad_left_ = pad_pool_.size();
        }
        std::size_t k = std::min(pad.size(), pad_left_);
        std::memcpy(pad.data(), pad_pool_.data() + pad_pool_.size() - pad_left_, k);
        pad_left_ -= k;
        pad = pad.subspan(k);
    }
    return {};
}

status packet_layer::write(bytes head, bytes body, buffer_chain& out) {
    std::size_t payload = head.size() + body.size();
    if (payload == 0) return fail(errc::invalid_argument, "empty payload");
    std::size_t blk = std::max<std::size_t>(8, tx_->block_size());
    std::size_t aligned = 4 + 1 + payload - (tx_->length_in_clear() ? 4 : 0);
    std::size_t pad = blk - aligned % blk;
    if (pad < 4) pad += blk;
    std::size_t plen = 1 + payload + pad;
    std::size_t total = 4 + plen + tx_->tag_size();
    if (total > lim_.max_packet) return fail(errc::limit_exceeded, "packet over max_packet");

    mut_bytes dst = out.prepare(total);
    store_be32(dst.data(), static_cast<std::uint32_t>(plen));
    dst[4] = std::byte(pad);
    if (!head.empty()) std::memcpy(dst.data() + 5, head.data(), head.size());
    status s = fill_padding(dst.subspan(5 + payload, pad));
    // The body (a channel's payload) goes in with the sealing: one pass instead of copy + seal.
    if (s) {
        s = body.empty() ? tx_->seal(tx_seq_, dst.first(4 + plen), dst.subspan(4 + plen))
                         : tx_->seal_from(tx_seq_, dst.first(4 + plen), 5 + head.size(), body, dst.subspan(4 + plen));
    }
    if (!s) {
        out.commit(0);
        return s;
    }
    out.commit(total);
    ++tx_seq_;  // wraps modulo 2^32 (RFC 4253 §6.4)
    tx_bytes_ += total;
    ++tx_packets_;
    return {};
}

void packet_layer::reserve_rx(std::size_t n) {
    if (n <= rx_cap_) return;
    std::size_t cap = std::max({n, rx_cap_ * 2, std::size_t(4096)});
    cap = std::min(cap, std::max(n, lim_.max_packet));
    auto nb = std::make_unique<std::byte[]>(cap);
    if (rx_fill_) std::memcpy(nb.get(), rx_buf_.get(), rx_fill_);
    rx_buf_ = std::move(nb);
    rx_cap_ = cap;
}

status packet_layer::begin(mut_bytes first) {
    FERRY_TRY(len, rx_->open_length(rx_seq_, first));
    std::uint64_t plen = *len;
    std::size_t blk = std::max<std::size_t>(8, rx_->block_size());
    std::uint64_t total = 4 + plen + rx_->tag_size();
    if (total > lim_.max_packet) return fail(errc::limit_exceeded, "packet over max_packet");
    // Padding length byte, at least one payload byte and four padding bytes.
    if (plen < 6) return fail(errc::bad_length, "packet too short");
    std::uint64_t aligned = rx_->length_in_clear() ? plen : plen + 4;
    if (aligned % blk != 0) return fail(errc::bad_length, "packet length not block-aligned");
    if (4 + plen < rx_->length_bytes()) return fail(errc::bad_length, "packet too short");
    rx_have_len_ = true;
    rx_total_ = static_cast<std::size_t>(total);
    return {};
}

result<inbound_packet> packet_layer::finish(mut_bytes pkt) {
    std::size_t body = rx_total_ - rx_->tag_size();
    rx_have_len_ = false;
    FERRY_TRY(ok, rx_->open(rx_seq_, pkt.first(body), pkt.subspan(body)));
    std::size_t plen = body - 4;
    std::size_t pad = std::to_integer<std::size_t>(pkt[4]);
    if (pad < 4) return fail(errc::ssh_protocol, "padding shorter than 4 bytes");
    if (pad + 2 > plen) return fail(errc::ssh_protocol, "padding longer than the packet");
    inbound_packet p{pkt.subspan(5, plen - 1 - pad), rx_seq_};
    ++rx_seq_;
    rx_bytes_ += rx_total_;
    ++rx_packets_;
    return p;
}

result<std::optional<inbound_packet>> packet_layer::read(mut_bytes& in) {
    const std::size_t lb = rx_->length_bytes();
    if (rx_fill_ == 0) {
        // Nothing buffered: open the packet where it lies if it is all there.
        if (!rx_have_len_ && in.size() >= lb) {
            FERRY_TRY(ok, begin(in.first(lb)));
        }
        if (rx_have_len_ && in.size() >= rx_total_) {
            mut_bytes pkt = in.first(rx_total_);
            in = in.subspan(rx_total_);
            FERRY_TRY(p, finish(pkt));
            return std::optional<inbound_packet>(*p);
        }
        // Partial: keep what we have (at most one packet's worth, already bounded by begin()).
        if (!in.empty()) {
            reserve_rx(rx_have_len_ ? rx_total_ : lb);
            std::memcpy(rx_buf_.get(), in.data(), in.size());
            rx_fill_ = in.size();
            in = in.subspan(in.size());
        }
        return std::optional<inbound_packet>();
    }
    if (!rx_have_len_) {
        std::size_t k = std::min(lb - rx_fill_, in.size());
        if (k) std::memcpy(rx_buf_.get() + rx_fill_, in.data(), k);
        rx_fill_ += k;
        in = in.subspan(k);
        if (rx_fill_ < lb) return std::optional<inbound_packet>();
        FERRY_TRY(ok, begin(mut_bytes(rx_buf_.get(), lb)));
        reserve_rx(rx_total_);
    }
    std::size_t k = std::min(rx_total_ - rx_fill_, in.size());
    if (k) std::memcpy(rx_buf_.get() + rx_fill_, in.data(), k);
    rx_fill_ += k;
    in = in.subspan(k);
    if (rx_fill_ < rx_total_) return std::optional<inbound_packet>();
    rx_fill_ = 0;  // the buffer keeps the bytes until the next read(): the payload points there
    FERRY_TRY(p, finish(mut_bytes(rx_buf_.get(), rx_total_)));
    return std::optional<inbound_packet>(*p);
}

}  // namespace ferry::ssh
