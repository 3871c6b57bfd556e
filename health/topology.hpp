#pragma once
// The immutable, versioned view of the cluster that routing reads. The health
// monitor builds a new one after every check and hands it to each worker as a
// shared_ptr<const topology>; nobody mutates one after it is built.

#include "conf/config.hpp"
#include "health/member_tracker.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace patroxy::health {

/// One member as of this snapshot.
struct member_view {
    std::size_t index = 0;                  ///< into config::members
    std::string name;
    bool up = false;                        ///< check hysteresis says reachable
    int health = 0;                         ///< HAProxy-style counter, for the stats page
    std::optional<patroni_report> report;   ///< last answer while up
    check_result last_check;
    wall_time last_change{};
    std::chrono::milliseconds downtime{0};
    std::optional<std::uint64_t> lag_bytes; ///< replicas, when the leader's position is known
};

struct topology {
    std::uint64_t generation = 0;
    std::vector<member_view> members;
    /// The member the write listener routes to: the single one that claims
    /// leadership and is up and running. Empty when none, or two claim it.
    std::optional<std::size_t> leader;
    /// Members the read listener may use: up, running replicas, not tagged
    /// noloadbalance, within max_lag when that is set.
    std::vector<std::size_t> readable;
    /// Every up member that says it leads; more than one is a split brain.
    std::vector<std::size_t> leader_claimants;
    std::optional<int> timeline;
    bool paused = false;

    bool split_brain() const { return leader_claimants.size() > 1; }
    bool is_readable(std::size_t member) const;
    /// A member still holds a role a session may stay on: the leader for the
    /// write listener; for the read listener, an up running replica (lag and
    /// noloadbalance only keep new sessions away) or the leader when reads fell back.
    bool keeps_write(std::size_t member) const { return leader && *leader == member; }
    bool keeps_read(std::size_t member) const;
    /// Same routing decisions as `other` (what workers care about).
    bool same_routing(const topology& other) const;
};

using topology_ptr = std::shared_ptr<const topology>;

/// Decides leader and readable replicas from the members' views. Pure.
topology build_topology(std::uint64_t generation, std::vector<member_view> members, const conf::health_config& health);

}  // namespace patroxy::health
