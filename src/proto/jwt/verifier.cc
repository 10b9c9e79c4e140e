#include "proto/jwt/verifier.hh"

#include "proto/base/assert.hh"

namespace ferry::jwt {

verifier::verifier(std::shared_ptr<const key_set> keys, verify_options opt, const cache_options& copt)
    : keys_(std::move(keys)), opt_(std::move(opt)), cache_(copt) {
    FERRY_ASSERT(keys_ != nullptr);
}

void verifier::update(std::shared_ptr<const key_set> keys, verify_options opt) {
    FERRY_ASSERT(keys != nullptr);
    keys_ = std::move(keys);
    opt_ = std::move(opt);
    cache_.clear();
}

result<const claims*> verifier::verify(std::string_view token, unix_time now) {
    if (const claims* c = cache_.find(token, now)) return c;
    auto r = jwt::verify(token, *keys_, opt_, now, scratch_);
    if (!r) return fail(r.err());
    if (const claims* c = cache_.insert(token, std::move(*r), now)) return c;
    uncached_ = std::move(*r);
    return &uncached_;
}

}  // namespace ferry::jwt
