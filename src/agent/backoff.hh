#pragma once
// The reconnect schedule of `ferry agent` (R1): exponential with jitter, capped; deterministic
// when the caller injects the random source (tests).
#include <chrono>
#include <functional>

namespace ferry::agent {

using std::chrono::milliseconds;

struct backoff_policy {
    milliseconds base{2'000};
    double factor = 2.0;
    milliseconds cap{60'000};
    double jitter = 0.3;  // each delay is nominal * (1 +- jitter), then capped
};

class backoff {
public:
    // `uniform` returns numbers in [0, 1): injected so tests are deterministic.
    backoff(backoff_policy p, std::function<double()> uniform);
    // The delay before the next attempt: 0 after a success (the first retry is immediate),
    // then base, base*factor, ... with jitter, never above the cap.
    milliseconds next();
    // The cap (with downward jitter); the schedule stays at the cap afterwards. For refusals
    // that retrying soon cannot fix (401/403).
    milliseconds at_cap();
    // A connection succeeded: the next failure retries at once again.
    void reset() noexcept { step_ = 0; }
    unsigned step() const noexcept { return step_; }

private:
    milliseconds jittered(double nominal_ms);
    backoff_policy p_;
    std::function<double()> uniform_;
    unsigned step_ = 0;  // retries since the last success
};

}  // namespace ferry::agent
