#pragma once
// A small SSH client for interoperability tests: one ferry::ssh::session (client role) on a
// TCP socket, driven with poll() in the calling thread, bridging channels to local TCP sockets
// like `ssh -L` and `ssh -R` do:
//   * direct-tcpip: connections accepted on a local listener become direct-tcpip channels to
//     a target the server connects to;
//   * tcpip-forward: the server's forwarded-tcpip channels are connected to a local port.
// Flow control is real in both directions: a local socket is only read while its channel can
// send (send_data returned everything; otherwise we wait for `writable`, or for
// writable_after_kex after a rekey), and received data is acknowledged with consumed() only
// once it was written to the local socket, so a slow local reader slows the server down.
// Test-only; no reactor, no threads.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/ssh/session.hh"

namespace ferry::test {

struct global_reply_record {
    ssh::global_kind request;
    bool ok;
    std::uint32_t port;
};

struct forwarded_open_record {
    std::string host;  // the bound address the server reported
    std::uint32_t port;
    std::string origin_host;
    std::uint32_t origin_port;
};

class bridge {
public:
    // `ssh_fd`: a connected TCP socket (made non-blocking here; closed by the destructor).
    bridge(int ssh_fd, ssh::session_config cfg);
    ~bridge();
    bridge(const bridge&) = delete;
    bridge& operator=(const bridge&) = delete;

    ssh::session& session() noexcept { return s_; }
    buffer_chain& out() noexcept { return out_; }

    bool start();
    // Runs the loop until `done()` is true (checked between iterations), a failure, or
    // `timeout_ms`. Returns done().
    bool run(const std::function<bool()>& done, int timeout_ms);
    // One iteration: flush, poll (at most `wait_ms`), handle what is ready.
    void step(int wait_ms);

    // direct-tcpip: accept on `listen_fd` (owned from now on; replaces an earlier one) and open
    // channels to host:port.
    void serve_direct_tcpip(int listen_fd, std::string host, std::uint32_t port);
    // forwarded-tcpip channels are connected to 127.0.0.1:port.
    void forward_to(std::uint16_t port) { forward_target_ = port; }

    // Sends DISCONNECT and flushes what it can.
    void disconnect(const char* why);

    const std::string& failure() const noexcept { return failure_; }
    bool authenticated() const noexcept { return authenticated_; }
    const std::string& auth_method() const noexcept { return method_; }
    int rekeys() const noexcept { return rekeys_; }
    bool peer_disconnected() const noexcept { return peer_disconnected_; }
    const std::vector<global_reply_record>& global_replies() const noexcept { return replies_; }
    const std::vector<forwarded_open_record>& forwarded_opens() const noexcept {
        return forwarded_opens_;
    }
    // Channels (and sockets still flushing after their channel closed).
    std::size_t active_links() const noexcept { return links_.size() + draining_.size(); }
    std::size_t channels_opened() const noexcept { return channels_opened_; }
    // How often a channel had to wait for the peer's window or a rekey, and the most bytes
    // buffered toward a local socket (bounded by our receive window).
    std::uint64_t send_blocks() const noexcept { return send_blocks_; }
    std::size_t max_to_sock() const noexcept { return max_to_sock_; }
    void reset_max_to_sock() noexcept { max_to_sock_ = 0; }

private:
    struct link {
        int fd = -1;
        bool opened = false;
        bool blocked = false;          // waiting for `writable` / writable_after_kex
        bool sock_eof = false, eof_sent = false;
        bool chan_eof = false, shut_wr = false;
        bool close_sent = false;
        std::vector<std::byte> to_sock;  // received on the channel, not yet written locally
        std::size_t to_sock_off = 0;
        std::vector<std::byte> to_chan;  // read locally (first to_chan_len bytes), not yet
        std::size_t to_chan_off = 0;     // taken by send_data from to_chan_off on
        std::size_t to_chan_len = 0;
    };

    void fail(std::string why);
    void flush_ssh();
    void read_ssh();
    void on_event(const ssh::session_event& ev);
    void on_channel(const ssh::conn_event& ev);
    void accept_local();
    void deliver(std::uint32_t id, link& l, bytes data);
    // Writes buffered channel data to the local socket; `id` < 0: the channel is gone.
    void flush_sock(long id, link& l);
    void read_sock(std::uint32_t id, link& l);
    void pump_to_chan(std::uint32_t id, link& l);
    void maybe_close(std::uint32_t id, link& l);
    bool want_read(const link& l) const;
    void close_link(link& l);

    int fd_;
    ssh::session s_;
    buffer_chain out_;
    std::vector<std::byte> rbuf_;
    std::map<std::uint32_t, link> links_;
    std::vector<link> draining_;  // channel closed, local socket still being written
    int listen_fd_ = -1;
    std::string direct_host_;
    std::uint32_t direct_port_ = 0;
    std::uint16_t forward_target_ = 0;

    std::string failure_;
    bool authenticated_ = false;
    bool peer_disconnected_ = false;
    std::string method_;
    int rekeys_ = 0;
    std::vector<global_reply_record> replies_;
    std::vector<forwarded_open_record> forwarded_opens_;
    std::size_t channels_opened_ = 0;
    std::uint64_t send_blocks_ = 0;
    std::size_t max_to_sock_ = 0;
};

}  // namespace ferry::test
