#include "health/topology.hpp"

#include <algorithm>

namespace patroxy::health {

bool topology::is_readable(std::size_t position) const {
    return std::find(readable.begin(), readable.end(), position) != readable.end();
}

std::optional<std::size_t> topology::position(member_id id) const {
    for (std::size_t i = 0; i < members.size(); ++i) {
        if (members[i].id == id) {
            return i;
        }
    }
    return std::nullopt;
}

bool topology::keeps_read(member_id id) const {
    const auto at = position(id);
    if (!at) {
        return false;
    }
    const auto& m = members[*at];
    return m.up && m.report && m.report->role == patroni_role::replica && m.report->running();
}

bool topology::keeps(conf::listener_role role, member_id id) const {
    using conf::listener_role;
    switch (role) {
    case listener_role::write: return keeps_write(id) && !standby_cluster();
    case listener_role::standby_leader: return keeps_write(id) && standby_cluster();
    case listener_role::any: return keeps_write(id) || keeps_read(id);
    default: return keeps_read(id);
    }
}

bool topology::standby_cluster() const {
    return leader && members[*leader].report && members[*leader].report->role == patroni_role::standby_leader;
}

const listener_class* topology::class_of(std::string_view name) const {
    for (const auto& c : classes) {
        if (c.listener == name) {
            return &c;
        }
    }
    return nullptr;
}

const std::vector<std::size_t>& listener_class::routed(std::size_t* via) const {
    if (via != nullptr) {
        *via = 0;
    }
    if (!eligible.empty()) {
        return eligible;
    }
    for (std::size_t i = 0; i < fallbacks.size(); ++i) {
        if (!fallbacks[i].empty()) {
            if (via != nullptr) {
                *via = i + 1;
            }
            return fallbacks[i];
        }
    }
    return eligible;
}

conf::listener_role listener_class::role_at(std::size_t via) const {
    return via == 0 || via > fallback_roles.size() ? role : fallback_roles[via - 1];
}

bool listener_class::still_eligible(conf::listener_role r, std::size_t position) const {
    const std::vector<std::size_t>* set = r == role ? &eligible : nullptr;
    for (std::size_t i = 0; set == nullptr && i < fallback_roles.size() && i < fallbacks.size(); ++i) {
        if (fallback_roles[i] == r) {
            set = &fallbacks[i];
        }
    }
    return set == nullptr || std::find(set->begin(), set->end(), position) != set->end();
}

std::string listener_class::why_excluded(member_id id) const {
    for (const auto& e : excluded) {
        if (e.member == id) {
            return e.why;
        }
    }
    return {};
}

bool listener_class::excluded_by_members_only(member_id id) const {
    return std::any_of(excluded.begin(), excluded.end(), [&](const exclusion& e) { return e.member == id && !e.drains; });
}

bool topology::same_routing(const topology& other) const {
    if (members.size() != other.members.size()) {
        return false;
    }
    const auto id_at = [](const topology& t, std::optional<std::size_t> p) {
        return p ? std::optional<member_id>(t.members[*p].id) : std::nullopt;
    };
    // `readable` is left out: the classes below are what routing reads.
    if (id_at(*this, leader) != id_at(other, other.leader) || writes_held != other.writes_held ||
        fenced != other.fenced) {
        return false;
    }
    for (std::size_t i = 0; i < members.size(); ++i) {
        const auto& a = members[i];
        const auto& b = other.members[i];
        if (a.id != b.id || a.host != b.host || a.port != b.port || keeps_read(a.id) != other.keeps_read(b.id) ||
            // what keeps a DOWN replica's sessions (an up one's key changes nothing)
            (!a.up && a.dcs_replica) != (!b.up && b.dcs_replica) ||
            a.weight != b.weight || a.maxconn != b.maxconn ||
            // tags: `prefer` reads them from the snapshot at each new session
            (a.report ? a.report->tags : std::map<std::string, std::string>{}) !=
                (b.report ? b.report->tags : std::map<std::string, std::string>{})) {
            return false;
        }
    }
    // Positions name the same members now: the classes compare as positions.
    if (classes.size() != other.classes.size() || standby_cluster() != other.standby_cluster()) {
        return false;
    }
    for (std::size_t i = 0; i < classes.size(); ++i) {
        const auto& a = classes[i];
        const auto& b = other.classes[i];
        if (a.listener != b.listener || a.role != b.role || a.eligible != b.eligible || a.fallbacks != b.fallbacks) {
            return false;
        }
    }
    return true;
}

std::string_view to_string(lock_observation::source s) {
    switch (s) {
    case lock_observation::source::dcs: return "dcs";
    case lock_observation::source::cluster: return "cluster";
    case lock_observation::source::none: return "roles";
    }
    return "roles";
}

namespace {
// The lock holder leads unless its own answer contradicts it: it answers, and
// says it is not (yet) primary or that PostgreSQL is not running. One that
// does not answer at all still leads while the lock is held (a hung API).
std::optional<std::size_t> lock_leader(const topology& t, const lock_observation& lock) {
    if (!lock.holder) {
        return std::nullopt;  // released: a change is under way
    }
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        if (m.name != *lock.holder) {
            continue;
        }
        if (m.host.empty()) {
            return std::nullopt;  // nowhere to connect yet
        }
        if (!m.report) {
            // Not answering (or not yet asked): the lock says it leads, but a
            // member never seen up is not routed to on the lock's word alone,
            // unless its own DCS key says it runs as primary.
            return m.ever_up || m.dcs_primary ? std::optional<std::size_t>(i) : std::nullopt;
        }
        const bool contradicts = m.up && (!m.report->claims_leadership() || !m.report->running());
        return contradicts ? std::nullopt : std::optional<std::size_t>(i);
    }
    return std::nullopt;
}

// Streaming from the leader: Patroni 3.1+ says so in `state`, 3.0.4+ in
// `replication_state`; for 3.0.2 the leader's own replication rows tell,
// when it lists any (a leader that lists none cannot tell them apart).
std::optional<bool> streaming(const topology& t, const member_view& m) {
    if (m.report->state == "streaming") {
        return true;
    }
    if (!m.report->replication_state.empty()) {
        return m.report->replication_state == "streaming";
    }
    if (!t.leader || !t.members[*t.leader].report) {
        return std::nullopt;
    }
    const auto& rows = t.members[*t.leader].report->streaming_standbys;
    if (rows.empty() && t.members[*t.leader].report->sync_standbys.empty()) {
        return std::nullopt;
    }
    return std::find(rows.begin(), rows.end(), m.name) != rows.end();
}
}  // namespace

topology build_topology(std::uint64_t generation, std::vector<member_view> members, const conf::health_config& health,
                        const lock_observation& lock) {
    topology t;
    t.generation = generation;
    t.members = std::move(members);
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        if (m.up && m.report && m.report->claims_leadership() && m.report->running() && !m.host.empty()) {
            t.leader_claimants.push_back(i);
        }
        if (m.report && m.report->pause) {
            t.paused = true;
        }
    }
    t.leader_source = lock.from;
    t.lock_holder = lock.holder;
    if (lock.from == lock_observation::source::dcs) {
        // The key decides, and resolves two claimants.
        t.leader = lock_leader(t, lock);
        t.writes_held = lock.changing && t.leader.has_value();
    } else if (t.leader_claimants.size() == 1) {
        t.leader = t.leader_claimants.front();
    } else if (lock.from == lock_observation::source::cluster && lock.holder) {
        const auto held = lock_leader(t, lock);
        if (t.leader_claimants.empty()) {
            // Nobody claims: the holder other members name, when its own API is silent.
            t.leader = held && !t.members[*held].report ? held : std::nullopt;
        } else if (held && std::find(t.leader_claimants.begin(), t.leader_claimants.end(), *held) !=
                               t.leader_claimants.end()) {
            t.leader = held;  // two claim it: the one Patroni's lock names
        }
    }
    // Otherwise the split-brain guard: with two claimants and no lock to
    // tell, writing to either may lose data.
    if (lock.from == lock_observation::source::cluster &&
        !(t.leader && lock.holder && t.members[*t.leader].name == *lock.holder)) {
        t.leader_source = lock_observation::source::none;  // the roles decided, not the copy of the key
    }
    if (t.leader && t.members[*t.leader].report) {
        t.timeline = t.members[*t.leader].report->timeline;
    }
    // Plain values rather than an optional: GCC 12 misreads the optional here (-Wmaybe-uninitialized).
    const bool leader_wal_known =
        t.leader && t.members[*t.leader].report && t.members[*t.leader].report->wal_position.has_value();
    const std::uint64_t leader_wal = leader_wal_known ? *t.members[*t.leader].report->wal_position : 0;
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        auto& m = t.members[i];
        if (!m.up || !m.report || m.report->role != patroni_role::replica || !m.report->running() || m.host.empty()) {
            continue;
        }
        if (leader_wal_known && m.report->wal_position) {
            m.lag_bytes = leader_wal > *m.report->wal_position ? leader_wal - *m.report->wal_position : 0;
        }
        if (leader_wal_known) {
            const auto replayed = m.report->replayed_position ? m.report->replayed_position : m.report->wal_position;
            if (replayed) {
                m.replay_lag_bytes = leader_wal > *replayed ? leader_wal - *replayed : 0;
            }
        }
        m.streaming = streaming(t, m);
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
