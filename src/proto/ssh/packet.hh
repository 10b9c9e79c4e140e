#pragma once
// The binary packet protocol (RFC 4253 §6), both directions, sans-IO.
//
//   uint32 packet_length | byte padding_length | payload | random padding | mac/tag
//
// Outbound packets are built directly in space prepared at the end of the caller's
// buffer_chain and sealed there: the payload is copied once, never staged (with AES-GCM the body
// is read by the cipher where it lies: packet_cipher::seal_from). Inbound packets are
// opened in place: when a whole packet sits in the caller's input span it is decrypted right
// there; only a packet split across reads is gathered into one internal buffer (bounded by
// max_packet). The returned payload view is valid until the next call to read().
//
// Limits and checks on input, in order: the length is bounded by max_packet before a byte of the
// packet body is buffered; the length must be block-aligned; the MAC/tag is checked in constant
// time before the padding length is looked at; padding is at least 4 bytes and leaves a payload
// of at least one byte.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/cipher.hh"
#include "proto/ssh/crypto.hh"

namespace ferry::ssh {

struct packet_limits {
    // Largest packet on the wire (length field, padding and MAC included), both directions.
    // RFC 4253 §6.1 requires at least 35000; OpenSSH accepts 256 KiB.
    std::size_t max_packet = 256 * 1024;
};

struct inbound_packet {
    mut_bytes payload;  // at least one byte (the message number)
    std::uint32_t seq;  // its sequence number (for SSH_MSG_UNIMPLEMENTED)
};

class packet_layer {
public:
    packet_layer(const packet_limits& lim, rng& r);

    // Seals the payload head || body (either may be empty, not both) and appends the packet to
    // `out`. Fails with errc::limit_exceeded when the packet would exceed max_packet.
    status write(bytes head, bytes body, buffer_chain& out);
    status write(bytes payload, buffer_chain& out) { return write(payload, {}, out); }
    // A payload size write() accepts under any cipher suite.
    std::size_t max_payload() const noexcept;

    // Consumes bytes from the front of `in`. Returns a packet once one is complete (and leaves
    // the bytes after it in `in`), or nullopt after consuming all of `in`. Errors: errc::ssh_mac
    // (MAC/tag), errc::bad_length (length field), errc::limit_exceeded (over max_packet),
    // errc::ssh_protocol (padding). After an error the layer is unusable.
    result<std::optional<inbound_packet>> read(mut_bytes& in);

    // Keys take effect for the next packet in that direction (after NEWKEYS).
    void set_send_cipher(std::unique_ptr<packet_cipher> c) noexcept;
    void set_recv_cipher(std::unique_ptr<packet_cipher> c) noexcept;
    // Strict KEX resets the sequence numbers at every NEWKEYS.
    void reset_send_seq() noexcept { tx_seq_ = 0; }
    void reset_recv_seq() noexcept { rx_seq_ = 0; }
    std::uint32_t send_seq() const noexcept { return tx_seq_; }
    std::uint32_t recv_seq() const noexcept { return rx_seq_; }

    // Traffic under the current keys (reset by set_*_cipher), for rekeying.
    std::uint64_t sent_bytes() const noexcept { return tx_bytes_; }
    std::uint64_t received_bytes() const noexcept { return rx_bytes_; }
    std::uint64_t sent_packets() const noexcept { return tx_packets_; }
    std::uint64_t received_packets() const noexcept { return rx_packets_; }
    // True while a partial packet is buffered.
    bool mid_packet() const noexcept { return rx_fill_ != 0 || rx_have_len_; }

private:
    status begin(mut_bytes first);
    result<inbound_packet> finish(mut_bytes pkt);
    status fill_padding(mut_bytes pad);
    void reserve_rx(std::size_t n);

    packet_limits lim_;
    rng& rng_;
    std::unique_ptr<packet_cipher> tx_;
    std::unique_ptr<packet_cipher> rx_;
    std::uint32_t tx_seq_ = 0;
    std::uint32_t rx_seq_ = 0;
    std::uint64_t tx_bytes_ = 0, rx_bytes_ = 0, tx_packets_ = 0, rx_packets_ = 0;

    // Partial inbound packet.
    std::unique_ptr<std::byte[]> rx_buf_;
    std::size_t rx_cap_ = 0;
    std::size_t rx_fill_ = 0;
    bool rx_have_len_ = false;
    std::size_t rx_total_ = 0;  // 4 + packet_length + tag, once known

    // Random padding is drawn from a pool refilled from the rng 256 bytes at a time: one rng
    // call per many packets instead of one per packet.
    std::array<std::byte, 256> pad_pool_{};
    std::size_t pad_left_ = 0;
};

}  // namespace ferry::ssh
