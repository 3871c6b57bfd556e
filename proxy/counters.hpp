#pragma once
// Traffic counters. Each worker is the only writer of its own set (relaxed
// adds, no contention); the stats reader sums all workers' sets. The sets
// live in books kept by name (proxy/books.hpp).

#include "proxy/close_reason.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

namespace patroxy::proxy {

using counter = std::atomic<std::uint64_t>;

inline void bump(counter& c, std::uint64_t by = 1) { c.fetch_add(by, std::memory_order_relaxed); }
inline void drop(counter& c) { c.fetch_sub(1, std::memory_order_relaxed); }

/// One listener's sessions to one member.
struct member_counters {
    counter current{0};
    counter total{0};
    counter connect_errors{0};
    counter bytes_in{0};    ///< client -> member
    counter bytes_out{0};   ///< member -> client
};

/// One listener, summed over members.
struct listener_counters {
    counter accepted{0};
    counter current{0};
    counter held{0};        ///< waiting for an eligible member now
    counter bytes_in{0};
    counter bytes_out{0};
    std::array<counter, close_reason_count> closed{};  ///< by reason
};

inline std::uint64_t read(const counter& c) { return c.load(std::memory_order_relaxed); }

}  // namespace patroxy::proxy
