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

/// A member's identity for the life of the process: handed out by the
/// monitor per name, never reused, so that counters, trouble reports and
/// cancel keys find "the same member" across reloads and discovery.
using member_id = std::uint32_t;

/// One member as of this snapshot.
struct member_view {
    member_id id = 0;
    std::string name;
    std::string host;                       ///< PostgreSQL address (IP literal); empty while a name is unresolved
    std::uint16_t port = 0;
    std::string address_name;               ///< the host name `host` was resolved from, if any
    std::string api_url;                    ///< its Patroni REST API
    bool up = false;                        ///< check hysteresis says reachable
    bool ever_up = false;                   ///< was up at some point (or a previous process said so)
    bool discovered = false;                ///< from the DCS's members/ keys, not the file
    bool dcs_primary = false;               ///< its DCS member key says a running primary
    /// Its member key in a fresh DCS view says a running, streaming replica:
    /// while its API fails checks (hung, slow), its open read sessions stay
    /// (proxy::keeps_while_api_fails).
    bool dcs_replica = false;
    int health = 0;                         ///< HAProxy-style counter, for the stats page
    std::optional<patroni_report> report;   ///< last answer while up
    check_result last_check;
    wall_time last_change{};
    std::chrono::milliseconds downtime{0};
    std::optional<std::uint64_t> lag_bytes; ///< replicas, when the leader's position is known
    /// Replicas: how far replay is behind the leader, in bytes (what a read
    /// on it misses), and in time (since the leader first passed its replay
    /// point, as patroxy saw the leader's position move).
    std::optional<std::uint64_t> replay_lag_bytes;
    std::optional<std::chrono::milliseconds> replay_lag_time;
    /// Replicas: streaming from the leader; nullopt when nothing tells.
    std::optional<bool> streaming;
    int weight = 1;                          ///< from its member entry in the file
    int maxconn = 0;                         ///< per listener; 0: no limit
};

/// One listener's members as of this snapshot: the class it routes to, with
/// the listener's filters and the lag hysteresis applied (health/eligibility.hpp).
struct listener_class {
    std::string listener;
    conf::listener_role role = conf::listener_role::write;
    /// New sessions go to these (positions in `members`, in member order).
    std::vector<std::size_t> eligible;
    /// Each fallback class of the listener, filtered the same way, in its
    /// order (`fallback_roles`); used while `eligible` is empty.
    std::vector<std::vector<std::size_t>> fallbacks;
    std::vector<conf::listener_role> fallback_roles;
    /// Members of the class that the filters keep out, and why (the page, a drain's reason).
    struct exclusion {
        member_id member = 0;
        std::string why;
        /// Its open sessions drain (lag, tags, weight, ...); false when only
        /// the listener's `members` list leaves it out (that applies to new sessions).
        bool drains = true;
    };
    std::vector<exclusion> excluded;

    /// Where new sessions go: `eligible`, else the first fallback with a member.
    /// `via` says which: 0 the class itself, i+1 fallback i.
    const std::vector<std::size_t>& routed(std::size_t* via = nullptr) const;
    /// The class `via` names (the listener's role, or fallback via-1).
    conf::listener_role role_at(std::size_t via) const;
    /// A session routed by class `role` may stay on `position` (no soft
    /// reason to drain it); a role the listener no longer has: no reason either.
    bool still_eligible(conf::listener_role role, std::size_t position) const;
    /// Why `id` is kept out of the class, or empty.
    std::string why_excluded(member_id id) const;
    /// `id` is kept out only by the listener's `members` list: its sessions stay.
    bool excluded_by_members_only(member_id id) const;
};

/// Who holds Patroni's leader lock, as an observer other than the members'
/// own answers saw it: the DCS's leader key, or the lock holder a member's
/// `GET /cluster` names when the DCS cannot be read. The lock decides who
/// writes (DESIGN principle 2): a member that claims primary without it is
/// not a leader, and one that holds it but stops answering is not down.
///
/// The DCS's key is the truth: the holder leads unless its own answer
/// contradicts it. A /cluster answer is a member's copy of the key, up to a
/// Patroni loop old: it only breaks a tie between two claimants and keeps a
/// holder whose API stopped answering; it never delays a new claimant.
struct lock_observation {
    enum class source { none, dcs, cluster } from = source::none;
    std::optional<std::string> holder;   ///< the lock holder's name; none: the lock is free
    /// A failover or switchover is announced away from the holder: new writes
    /// wait until the lock has moved and the new holder answers as primary.
    bool changing = false;
};

std::string_view to_string(lock_observation::source s);

/// Routing decisions name members by position in `members`; sessions hold
/// member ids and look them up in whatever topology is current.
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
    /// What decided `leader`: the DCS's key, a member's /cluster, or the roles alone.
    lock_observation::source leader_source = lock_observation::source::none;
    std::optional<std::string> lock_holder;   ///< as the lock observation said
    /// New write sessions wait (a switchover is announced); open ones stay.
    bool writes_held = false;
    /// An old leader that may take its lock back (Patroni before 3.0.3, see
    /// health.handback_guard): its open sessions are paused, neither relayed
    /// nor cut, until it leads again or is known not to.
    std::optional<member_id> fenced;
    /// One per listener of the configuration the monitor built it under.
    std::vector<listener_class> classes;

    /// Two members claim primary and no lock observation tells them apart.
    bool split_brain() const { return leader_claimants.size() > 1 && !leader; }
    /// Two claim primary and the lock decided between them.
    bool double_claim_resolved() const { return leader_claimants.size() > 1 && leader.has_value(); }
    bool is_readable(std::size_t position) const;
    /// Where the member with `id` is in `members`, if it is there.
    std::optional<std::size_t> position(member_id id) const;
    /// A member still holds a role a session may stay on: the leader for the
    /// write listener; for the read listener, an up running replica (lag and
    /// noloadbalance only keep new sessions away). A replica promoted to
    /// leader keeps no read sessions (balancer: unless reads fall back to it).
    bool keeps_write(member_id id) const { return leader && members[*leader].id == id; }
    bool keeps_read(member_id id) const;
    /// A session of class `role` on `id` may stay open: the member still holds
    /// the role the class needs (the leader a primary or a standby leader, a
    /// replica running). Losing it cuts the session; leaving the class for
    /// a soft reason (lag, tags, weight) drains it at an idle point instead.
    bool keeps(conf::listener_role role, member_id id) const;
    /// The leader is a standby cluster's (it replicates from elsewhere).
    bool standby_cluster() const;
    /// The class computed for the listener called `name`, or nullptr.
    const listener_class* class_of(std::string_view name) const;
    /// Same routing decisions and addresses as `other` (what workers care about).
    bool same_routing(const topology& other) const;
};

using topology_ptr = std::shared_ptr<const topology>;

/// Decides leader and readable replicas from the members' views and, when
/// there is one, the lock observation. Pure.
topology build_topology(std::uint64_t generation, std::vector<member_view> members, const conf::health_config& health,
                        const lock_observation& lock = {});

}  // namespace patroxy::health
