#pragma once
// The per-shard token verifier: the current key set snapshot, the verification options, a
// verified-token cache and reusable scratch buffers. One per shard thread; not thread-safe.
//
// The control plane builds a new immutable key_set (and options) and sends it to each shard; the
// shard calls update(), which drops every cached token, so a removed key or a tightened option
// takes effect on the next request.
#include <memory>
#include <string_view>

#include "proto/jwt/cache.hh"
#include "proto/jwt/keys.hh"
#include "proto/jwt/token.hh"

namespace ferry::jwt {

class verifier {
public:
    // Precondition: keys != nullptr.
    verifier(std::shared_ptr<const key_set> keys, verify_options opt, const cache_options& copt = {});

    // A new snapshot: clears the cache. Precondition: keys != nullptr.
    void update(std::shared_ptr<const key_set> keys, verify_options opt);

    // verify() through the cache. The claims pointer stays valid until the next non-const call
    // on this verifier; copy what must outlive it (sub, tunnels, exp).
    result<const claims*> verify(std::string_view token, unix_time now);

    const key_set& keys() const noexcept { return *keys_; }
    const verify_options& options() const noexcept { return opt_; }
    const token_cache& cache() const noexcept { return cache_; }

private:
    std::shared_ptr<const key_set> keys_;
    verify_options opt_;
    token_cache cache_;
    scratch scratch_;
    claims uncached_;  // the last result when it could not be cached
};

}  // namespace ferry::jwt
