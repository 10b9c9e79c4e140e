#include "relay/admission.hh"

#include <algorithm>

namespace ferry::relay {

namespace {

using kind = admission_decision::kind;

admission_decision reject(ingress::error_kind k, std::string message, std::uint32_t retry_after = 0) {
    admission_decision d;
    d.what = kind::reject;
    d.error = k;
    d.message = std::move(message);
    d.extra.retry_after_s = retry_after;
    return d;
}

admission_decision token_refused(errc code) {
    return reject(ingress::kind_for_token_error(code), jwt::is_expired(code) ? "token expired" : "invalid token");
}

}  // namespace

bool is_tunnel_upgrade(const http1::request_head& h) {
    std::string_view t = h.target;
    if (t.substr(0, 7) != "/tunnel") return false;
    if (t.size() > 7 && t[7] != '?') return false;
    return h.upgrade;
}

admission_decision admit_request(const admission_request& rq, admission_view& v) {
    const http1::request_head& h = rq.head;
    const relay_config& o = v.cfg;
    auto bearer = ingress::bearer_token(h);
    std::string_view token;
    if (bearer) {
        token = *bearer;
    } else if (bearer.err().code == errc::http_bad_request) {
        return reject(ingress::error_kind::bad_request, "more than one Authorization field");
    } else if (bearer.err().code != errc::unsupported) {
        return reject(ingress::error_kind::token_invalid, "malformed bearer token");
    }  // another scheme: no token of ours (a public tunnel may forward it)

    // Agents: the WebSocket upgrade on /tunnel, authenticated by the token.
    if (is_tunnel_upgrade(h)) {
        if (token.empty()) return reject(ingress::error_kind::token_missing, "agents need a bearer token");
        auto c = v.verifier.verify(token, rq.unix_now);
        if (!c) return token_refused(c.err().code);
        // A token meant for consumers (say, one with only a ferry_tunnels grant, handed to a
        // web app) must not register tunnels: agents need the agent scope.
        if (!(*c)->has_scope(o.agent_scope)) {
            return reject(ingress::error_kind::forbidden,
                          "this token is not an agent token: agents need the scope " + o.agent_scope);
        }
        if (!v.names.add_agent((*c)->sub, o.max_agents_per_user)) {
            return reject(ingress::error_kind::rate_limited, "too many agent connections for this user", 60);
        }
        admission_decision d;
        d.what = kind::agent_upgrade;
        d.authenticated = true;
        d.sub = (*c)->sub;
        d.expires = (*c)->exp ? *(*c)->exp : 0;
        return d;
    }

    static std::string no_scratch;
    auto rt = ingress::route_request(h, o.base_domain, rq.route_scratch ? *rq.route_scratch : no_scratch);
    if (!rt) {
        return reject(ingress::kind_for(ingress::route_error_of(rt.err())),
                      rt.err().detail ? rt.err().detail : "no route");
    }
    admission_decision d;
    d.route = *rt;
    d.tunnel.assign(rt->tunnel);
    auto refuse = [&d](ingress::error_kind k, std::string message, std::uint32_t retry_after = 0) {
        d.what = kind::reject;
        d.error = k;
        d.message = std::move(message);
        d.extra.retry_after_s = retry_after;
        return std::move(d);
    };

    const bool is_public =
        std::find(o.public_tunnels.begin(), o.public_tunnels.end(), d.tunnel) != o.public_tunnels.end();
    const jwt::claims* claims = nullptr;
    if (!token.empty()) {
        auto c = v.verifier.verify(token, rq.unix_now);
        if (!c && !is_public) return token_refused(c.err().code);
        if (c) {
            claims = *c;
            d.authenticated = true;
        }
    } else if (!is_public) {
        return refuse(ingress::error_kind::token_missing, "missing bearer token");
    }

    auto it = v.directory.find(d.tunnel);
    const bool leased = it != v.directory.end() && it->second.state == name_state::kind::leased &&
                        rq.now < it->second.until;
    if (it == v.directory.end() || it->second.state == name_state::kind::free ||
        (it->second.state == name_state::kind::leased && !leased)) {
        return refuse(ingress::error_kind::not_found, "no such tunnel");
    }
    const name_state& ns = it->second;
    if (!is_public && !(claims && ingress::consumer_allowed(*claims, d.tunnel, ns.owner, false))) {
        return refuse(ingress::error_kind::forbidden, "this token may not use this tunnel");
    }
    // Online on another shard: the socket goes there (at most two hops: replicas that briefly
    // disagree must not bounce it for ever; then it is served, or queued, here).
    if (ns.state == name_state::kind::online && ns.shard != v.shard && rq.hops < 2) {
        d.what = kind::hand_over;
        d.shard = ns.shard;
        return d;
    }
    // Counted once per request, on the shard that serves it (after any hand-over).
    if (!rq.rate_counted) {
        d.rate_counted = true;
        d.rate_key = claims ? claims->sub : "ip:" + std::string(rq.client_ip);
        auto r = v.limiter.take(d.rate_key, rq.limiter_now);
        if (!r.allowed) {
            d.extra.rate_limit = r.limit;
            d.extra.rate_remaining = 0;
            d.extra.rate_reset_s = r.reset_s;
            return refuse(ingress::error_kind::rate_limited, "too many requests", r.retry_after_s);
        }
    }
    if (ns.state == name_state::kind::online) {
        if (auto l = v.local.find(d.tunnel); l != v.local.end()) {
            d.what = kind::serve;
            d.session = l->second;
            return d;
        }
    }
    d.what = kind::queue;  // leased, or online but not (yet) served here
    return d;
}

}  // namespace ferry::relay
