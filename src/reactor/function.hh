#pragma once
// A move-only type-erased callable (std::move_only_function arrives in C++23; GCC 12 lacks it).
// Used for cross-shard messages and timer callbacks: they capture move-only state such as a
// `buffer_chain` or an fd owner. One heap allocation per object; not for per-byte paths.
#include <memory>
#include <type_traits>
#include <utility>

namespace ferry::reactor {

template <class Sig>
class unique_function;

template <class R, class... A>
class unique_function<R(A...)> {
public:
    unique_function() noexcept = default;
    unique_function(std::nullptr_t) noexcept {}
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, unique_function> &&
                                                std::is_invocable_r_v<R, F&, A...>>>
    unique_function(F&& f) : p_(std::make_unique<impl<std::decay_t<F>>>(std::forward<F>(f))) {}

    unique_function(unique_function&&) noexcept = default;
    unique_function& operator=(unique_function&&) noexcept = default;

    explicit operator bool() const noexcept { return p_ != nullptr; }
    // Precondition: not empty.
    R operator()(A... a) { return p_->call(std::forward<A>(a)...); }

private:
    struct base {
        virtual ~base() = default;
        virtual R call(A... a) = 0;
    };
    template <class F>
    struct impl final : base {
        explicit impl(F&& f) : fn(std::move(f)) {}
        explicit impl(const F& f) : fn(f) {}
        R call(A... a) override { return fn(std::forward<A>(a)...); }
        F fn;
    };
    std::unique_ptr<base> p_;
};

}  // namespace ferry::reactor
