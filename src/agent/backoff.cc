#include "agent/backoff.hh"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ferry::agent {

backoff::backoff(backoff_policy p, std::function<double()> uniform) : p_(p), uniform_(std::move(uniform)) {
    if (p_.factor < 1.0) p_.factor = 1.0;
    if (p_.jitter < 0.0) p_.jitter = 0.0;
    if (p_.jitter > 1.0) p_.jitter = 1.0;
    if (p_.cap < p_.base) p_.cap = p_.base;
}

milliseconds backoff::jittered(double nominal) {
    const double u = uniform_ ? std::clamp(uniform_(), 0.0, 1.0) : 0.5;
    double d = nominal * (1.0 + p_.jitter * (2.0 * u - 1.0));
    d = std::clamp(d, 0.0, double(p_.cap.count()));
    return milliseconds(std::int64_t(std::llround(d)));
}

milliseconds backoff::next() {
    const unsigned k = step_;
    if (step_ < 64) ++step_;
    if (k == 0) return milliseconds(0);
    // base * factor^(k-1), computed without overflow past the cap.
    double nominal = double(p_.base.count());
    for (unsigned i = 1; i < k && nominal < double(p_.cap.count()); ++i) nominal *= p_.factor;
    nominal = std::min(nominal, double(p_.cap.count()));
    return jittered(nominal);
}

milliseconds backoff::at_cap() {
    step_ = 64;
    return jittered(double(p_.cap.count()));
}
}  // namespace ferry::agent
