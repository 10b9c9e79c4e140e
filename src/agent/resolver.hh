#pragma once
// Host names to addresses for `ferry agent`: IP literals directly, else getaddrinfo (blocking:
// at start-up and between connection attempts only, never while a link is serving).
#include <cstdint>
#include <string>

#include "proto/base/result.hh"
#include "reactor/address.hh"

namespace ferry::agent {

// IPv4 first when the name has both (local services often listen on 127.0.0.1 only).
// Errors: io with getaddrinfo's reason.
result<reactor::address> resolve(const std::string& host, std::uint16_t port);

}  // namespace ferry::agent
