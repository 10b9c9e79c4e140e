#include "relay/agent_tcp_conn.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "proto/base/log.hh"
#include "relay/shard_state.hh"

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
    if (!r_.enter_ssh_pending()) {
        shard_state& st = r_.state(owner().id());
        FERRY_LOG_GATED(st.refused_connection_log, st.log_now(), warn,
                        "raw SSH connection refused: too many are still authenticating", {"client", client},
                        {"limit", std::uint64_t(r_.max_ssh_pending())});
        close(reactor::close_mode::abort);
        return;
    }
    pending_ = true;
    agent_.adopt_slot(std::move(slot));
    int one = 1;
    (void)::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    agent_.start();
}

void agent_tcp_conn::authenticated() {
    if (pending_) r_.leave_ssh_pending();
    pending_ = false;
}

void agent_tcp_conn::on_close(const error& why) {
    authenticated();  // no longer pending either way
    agent_.on_close(why);
}

void agent_tcp_conn::carry(buffer_chain& ssh_bytes) {
    if (buffer_chain* out = output()) {
        out->append(std::move(ssh_bytes));
        commit_output();
    }
    ssh_bytes.clear();
}

}  // namespace ferry::relay
