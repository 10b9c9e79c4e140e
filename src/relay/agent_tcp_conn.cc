#include "relay/agent_tcp_conn.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace ferry::relay {

agent_tcp_conn::agent_tcp_conn(relay& r, reactor::shard& s, std::uint64_t id)
    : r_(r), agent_(r, s, *this, std::string(), id, 0, conn_limits::slot{}) {}

void agent_tcp_conn::on_open() {
    std::string client;
    reactor::address peer;
    if (auto p = this->peer()) {
        peer = *p;
        client = p->to_string();
    }
    conn_limits::slot slot;
    if (!r_.admit(owner(), slot, peer, true, client)) {
        close(reactor::close_mode::abort);
        return;
    }
    agent_.adopt_slot(std::move(slot));
    int one = 1;
    (void)::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    agent_.start();
}

void agent_tcp_conn::carry(buffer_chain& ssh_bytes) {
    if (buffer_chain* out = output()) {
        out->append(std::move(ssh_bytes));
        commit_output();
    }
    ssh_bytes.clear();
}

}  // namespace ferry::relay
