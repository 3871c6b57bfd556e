#pragma once
// The counters the stats page shows, kept by name: a listener's book and, in
// it, one book per member it has routed to. A book outlives any configuration
// (a reload that keeps a listener or a member keeps counting in the same
// book) and is never freed while the process runs, so sessions hold plain
// pointers into it. Each book has one slot per worker, each on a cache line of
// its own: workers never share one, the reader sums them.
//
// Books are created on the control thread (the registry's lock guards the
// maps, never the counters); workers only ever see pointers the control
// thread resolved for them (proxy/routing.hpp).

#include "proxy/counters.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace patroxy::proxy {

/// A T alone on its cache lines.
template <class T>
struct alignas(64) padded {
    T value;
};

/// Adds one to `active` and raises `peak` to match; returns the new count.
inline int count_in(std::atomic<int>& active, std::atomic<int>& peak) {
    const int now = active.fetch_add(1, std::memory_order_relaxed) + 1;
    for (int seen = peak.load(std::memory_order_relaxed);
         now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed);) {
    }
    return now;
}

/// One listener's sessions to one member.
struct member_book {
    member_book(std::string member, std::size_t workers)
        : name(std::move(member)), per_worker(std::make_unique<padded<member_counters>[]>(workers)) {}
    const std::string name;
    std::unique_ptr<padded<member_counters>[]> per_worker;
    std::atomic<int> active{0};   ///< sessions open now across workers
    std::atomic<int> peak{0};     ///< the most at once
    /// Sessions sent to it and not yet gone, connecting ones included: what
    /// leastconn and the member's maxconn count (a slot is taken before the connect).
    std::atomic<int> routed{0};
    member_counters& of(std::size_t worker) { return per_worker[worker].value; }
};

/// One listener, summed over its members.
struct listener_book {
    listener_book(std::string listener, std::size_t workers)
        : name(std::move(listener)), per_worker(std::make_unique<padded<listener_counters>[]>(workers)) {}
    const std::string name;
    std::unique_ptr<padded<listener_counters>[]> per_worker;
    /// Touched once per new session (never per byte): the maxconn budget and
    /// the round-robin cursor, so that reads alternate across workers as
    /// HAProxy's roundrobin does across threads.
    std::atomic<int> active{0};
    std::atomic<int> peak{0};
    std::atomic<std::size_t> cursor{0};
    listener_counters& of(std::size_t worker) { return per_worker[worker].value; }

private:
    friend class book_registry;
    std::map<std::string, std::unique_ptr<member_book>> members_;
};

/// One listener's sessions to one member, summed over workers.
struct member_totals {
    std::uint64_t current = 0;
    std::uint64_t peak = 0;
    std::uint64_t total = 0;
    std::uint64_t connect_errors = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
};

/// One listener, summed over workers.
struct listener_totals {
    std::uint64_t accepted = 0;
    std::uint64_t current = 0;
    std::uint64_t peak = 0;
    std::uint64_t held = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::array<std::uint64_t, close_reason_count> closed{};
    std::map<std::string, member_totals> members;   ///< by member name
};

class book_registry {
public:
    explicit book_registry(std::size_t workers) : workers_(workers) {}

    /// The book of the listener called `name`, made on first use (control thread).
    listener_book& listener(const std::string& name);
    /// The book of `l`'s sessions to the member called `name` (control thread).
    member_book& member(listener_book& l, const std::string& name);
    /// Every book summed over the workers, by listener name (any thread).
    std::map<std::string, listener_totals> totals() const;

private:
    std::size_t workers_;
    mutable std::mutex mutex_;   ///< the maps, not the counters
    std::map<std::string, std::unique_ptr<listener_book>> listeners_;
};

}  // namespace patroxy::proxy
