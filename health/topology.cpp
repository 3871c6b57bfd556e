#include "health/topology.hpp"

#include <algorithm>

namespace patroxy::health {

bool topology::is_readable(std::size_t member) const {
    return std::find(readable.begin(), readable.end(), member) != readable.end();
}

bool topology::keeps_read(std::size_t member) const {
    if (keeps_write(member)) {
        return true;
    }
    if (member >= members.size()) {
        return false;
    }
    const auto& m = members[member];
    return m.up && m.report && m.report->role == patroni_role::replica && m.report->running();
}

bool topology::same_routing(const topology& other) const {
    if (leader != other.leader || readable != other.readable || members.size() != other.members.size()) {
        return false;
    }
    for (std::size_t i = 0; i < members.size(); ++i) {
        if (keeps_read(i) != other.keeps_read(i)) {
            return false;
        }
    }
    return true;
}

topology build_topology(std::uint64_t generation, std::vector<member_view> members, const conf::health_config& health) {
    topology t;
    t.generation = generation;
    t.members = std::move(members);
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        if (m.up && m.report && m.report->claims_leadership() && m.report->running()) {
            t.leader_claimants.push_back(i);
        }
        if (m.report && m.report->pause) {
            t.paused = true;
        }
    }
    // Split-brain guard: with two claimants, writing to either may lose data.
    if (t.leader_claimants.size() == 1) {
        t.leader = t.leader_claimants.front();
        const auto& l = t.members[*t.leader];
        t.timeline = l.report->timeline;
    }
    // Plain values rather than an optional: GCC 12 misreads the optional here (-Wmaybe-uninitialized).
    const bool leader_wal_known = t.leader && t.members[*t.leader].report->wal_position.has_value();
    const std::uint64_t leader_wal = leader_wal_known ? *t.members[*t.leader].report->wal_position : 0;
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        auto& m = t.members[i];
        if (!m.up || !m.report || m.report->role != patroni_role::replica || !m.report->running()) {
            continue;
        }
        if (leader_wal_known && m.report->wal_position) {
            m.lag_bytes = leader_wal > *m.report->wal_position ? leader_wal - *m.report->wal_position : 0;
        }
        if (m.report->noloadbalance) {
            continue;
        }
        // Without a known leader position the lag is unknown; keep serving reads
        // through a failover rather than go dark.
        if (health.max_lag_bytes && m.lag_bytes && *m.lag_bytes > *health.max_lag_bytes) {
            continue;
        }
        t.readable.push_back(i);
    }
    return t;
}

}  // namespace patroxy::health
