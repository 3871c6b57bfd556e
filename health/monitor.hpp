#pragma once
// Owns one patroni_client and one member_tracker per member, on the control
// io_context. After every check it builds a new topology; it keeps the latest
// for readers (stats) and calls `publish` whenever routing changes.

#include "conf/config.hpp"
#include "health/patroni_client.hpp"
#include "health/topology.hpp"

#include <atomic>
#include <mutex>
#include <functional>
#include <memory>
#include <vector>

namespace patroxy::health {

class monitor {
public:
    using publisher = std::function<void(topology_ptr)>;

    monitor(net::io_context& control, const conf::config& cfg, publisher publish);
    ~monitor();
    monitor(const monitor&) = delete;
    monitor& operator=(const monitor&) = delete;

    /// Starts polling every member.
    void start();
    /// Stops polling; safe to call twice.
    void stop();
    /// A session could not use `member`: check it now, and if it leads,
    /// everyone soon (a leader that goes away usually has a successor).
    void suspect(std::size_t member);
    /// The newest snapshot; any thread.
    topology_ptr latest() const { return latest_.load(std::memory_order_acquire); }
    /// Counters for the stats page.
    std::uint64_t split_brain_events() const { return split_brain_events_.load(std::memory_order_relaxed); }
    std::uint64_t leader_changes() const { return leader_changes_.load(std::memory_order_relaxed); }
    /// When routing last got a leader, and how long it had none before that.
    struct leader_change {
        wall_time at{};
        std::chrono::milliseconds leaderless{0};
    };
    /// The last leader change (any thread); `at` is zero before the first.
    leader_change last_leader_change() const;

private:
    std::chrono::milliseconds on_check(std::size_t member, check_result r);
    topology_ptr rebuild();
    bool unsettled() const;

    const conf::config& cfg_;
    publisher publish_;
    std::vector<member_tracker> trackers_;
    std::vector<std::shared_ptr<patroni_client>> clients_;
    std::atomic<topology_ptr> latest_;
    topology_ptr routed_;  ///< last snapshot handed to `publish`
    std::uint64_t generation_ = 0;
    std::atomic<std::uint64_t> split_brain_events_{0};
    std::atomic<std::uint64_t> leader_changes_{0};
    std::optional<std::chrono::steady_clock::time_point> leaderless_since_;
    mutable std::mutex change_mutex_;   ///< guards last_change_ for readers on other threads
    leader_change last_change_;
};

}  // namespace patroxy::health
