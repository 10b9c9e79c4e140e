#include "relay/relay.hh"

#include <algorithm>
#include <cstdio>

#include "proto/base/log.hh"
#include "proto/ssh/hostkey.hh"
#include "relay/conn_limits.hh"
#include "relay/ingress.hh"
#include "relay/agent_conn.hh"
#include "relay/agent_tcp_conn.hh"
#include "relay/consumer_conn.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

relay::relay(std::shared_ptr<const relay_config> cfg)
    : cfg_(std::move(cfg)),
      registry_(std::make_unique<registry>(cfg_->max_names_per_user)),
      limits_(std::make_unique<conn_limits>(cfg_->max_connections, cfg_->max_connections_per_ip)) {}

relay::~relay() = default;

status relay::prepare(unsigned shards) {
    if (!cfg_->keys) return fail(errc::invalid_argument, "relay: no JWT key set");
    if (cfg_->host_key_seed.size() != 32) return fail(errc::invalid_argument, "relay: host key seed must be 32 bytes");
    shards_.clear();
    for (unsigned i = 0; i < shards; ++i) {
        auto st = std::make_unique<shard_state>();
        st->r = this;
        st->id = i;
        auto rng = ssh::system_rng::create();
        if (!rng) return fail(rng.err());
        st->rng = std::move(*rng);
        auto key = ssh::ed25519_private::from_seed(bytes(cfg_->host_key_seed.data(), cfg_->host_key_seed.size()));
        if (!key) return fail(key.err());
        st->host_key.emplace(std::move(*key));
        st->verifier = std::make_unique<jwt::verifier>(cfg_->keys, cfg_->verify);
        st->limiter = rate_limiter(cfg_->user_rate_limit, 60);
        // A copy per shard: connections take references to their shard's snapshot, so no
        // reference count is shared between shards.
        st->cfg = std::make_shared<const relay_config>(*cfg_);
        shards_.push_back(std::move(st));
    }
    return {};
}

reactor::connection_factory relay::factory() {
    return [this](reactor::shard& s) -> std::unique_ptr<reactor::connection> {
        if (s.id() >= shards_.size()) return nullptr;
        // At the connection cap with nobody here to evict (every connection on this shard has
        // presented a valid token): the socket is closed at once, before it costs anything.
        if (limits_->max_total() != 0 && limits_->total() >= limits_->max_total() &&
            !room_anywhere())
            return nullptr;
        return std::make_unique<consumer_conn>(*this, s);
    };
}

reactor::connection_factory relay::ssh_factory() {
    return [this](reactor::shard& s) -> std::unique_ptr<reactor::connection> {
        if (s.id() >= shards_.size()) return nullptr;
        if (limits_->max_total() != 0 && limits_->total() >= limits_->max_total() && !room_anywhere())
            return nullptr;
        return std::make_unique<agent_tcp_conn>(*this, s, registry_->next_session());
    };
}

bool relay::room_anywhere() const noexcept {
    for (const auto& st : shards_)
        if (st->listed.load(std::memory_order_relaxed) != 0) return true;
    return false;
}

bool relay::make_room(reactor::shard& on) {
    if (shards_[on.id()]->evict_one()) return true;
    // The room is on another shard: it closes one of its own (a message; the count comes back
    // when that connection is gone, so the process is one over its cap meanwhile, which the
    // descriptor reserve absorbs).
    for (unsigned k = 0; k < shards_.size(); ++k) {
        if (k == on.id() || shards_[k]->listed.load(std::memory_order_relaxed) == 0) continue;
        on.post(k, [this](reactor::shard& sh) { (void)state(sh.id()).evict_one(); });
        return true;
    }
    return false;
}

bool relay::admit(reactor::shard& on, conn_limits::slot& slot, const reactor::address& peer, bool per_ip,
                  std::string_view client) {
    conn_limits& lim = *limits_;
    shard_state& st = state(on.id());
    auto v = lim.admit(slot, peer, false, per_ip);
    // At the process's cap a connection here that waits for a request makes room
    // (shard_state::evict_one: unauthenticated ones first; agents never).
    if (v == conn_limits::verdict::over_total && make_room(on)) {
        v = lim.admit(slot, peer, true, per_ip);
        FERRY_LOG_GATED(st.refused_connection_log, st.log_now(), warn,
                        "at max_connections: closed a waiting connection to make room",
                        {"max_connections", std::uint64_t(lim.max_total())});
    }
    if (v == conn_limits::verdict::ok) return true;
    const bool ip = v == conn_limits::verdict::over_ip;
    FERRY_LOG_GATED(st.refused_connection_log, st.log_now(), warn,
                    ip ? "connection refused: max_connections_per_ip" : "connection refused: max_connections",
                    {"client", client}, {"limit", std::uint64_t(ip ? lim.max_per_ip() : lim.max_total())});
    return false;
}

std::uint32_t relay::max_ssh_pending() const noexcept {
    const std::size_t total = cfg_->max_connections;
    if (total == 0) return 4096;
    return std::uint32_t(std::clamp<std::size_t>(total / 8, 16, 1u << 20));
}

bool relay::enter_ssh_pending() noexcept {
    if (ssh_pending_.fetch_add(1, std::memory_order_relaxed) >= max_ssh_pending()) {
        ssh_pending_.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    return true;
}

std::string relay::host_key_fingerprint() const {
    if (shards_.empty()) return {};
    auto blob = ssh::ed25519_key_blob(shards_[0]->host_key->public_key());
    return ssh::fingerprint_sha256(blob);
}

}  // namespace ferry::relay
