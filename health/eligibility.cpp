#include "health/eligibility.hpp"

#include <algorithm>

namespace patroxy::health {

namespace {

using conf::listener_role;

constexpr std::size_t max_positions = 4096;   // about 3 h of checks at a 3 s interval

bool replica(const member_view& m) {
    return m.up && m.report && m.report->role == patroni_role::replica && m.report->running() && !m.host.empty();
}

bool has_tags(const member_view& m, const conf::tag_selector& wanted) {
    for (const auto& [key, value] : wanted) {
        if (!m.report) {
            return false;
        }
        const auto it = m.report->tags.find(key);
        if (it == m.report->tags.end() || it->second != value) {
            return false;
        }
    }
    return true;
}

// The class's members before the listener's filters: by role alone.
bool in_class(const topology& t, std::size_t i, listener_role role) {
    const auto& m = t.members[i];
    const bool leads = t.leader && *t.leader == i;
    switch (role) {
    case listener_role::write: return leads && !t.standby_cluster() && !t.writes_held;
    case listener_role::standby_leader: return leads && t.standby_cluster();
    case listener_role::any: return (leads && !t.writes_held) || replica(m);
    case listener_role::read: return replica(m);
    case listener_role::sync: return replica(m) && m.report->sync_standby && !m.report->nofailover;
    case listener_role::async: return replica(m) && !m.report->sync_standby;
    }
    return false;
}

}  // namespace

void eligibility::note_leader(const topology& t) {
    if (!t.leader || !t.members[*t.leader].report || !t.members[*t.leader].report->wal_position) {
        return;  // no leader: keep what was seen; lags are not computed without one
    }
    const auto& m = t.members[*t.leader];
    const auto pos = *m.report->wal_position;
    // Another leader, another timeline, or a position that went back (a
    // restore under the same name): the old samples say nothing any more.
    if (leader_ != m.id || leader_timeline_ != m.report->timeline ||
        (!leader_positions_.empty() && pos < leader_positions_.back().first)) {
        leader_positions_.clear();
        leader_ = m.id;
        leader_timeline_ = m.report->timeline;
    }
    if (leader_positions_.empty() || pos > leader_positions_.back().first) {
        const auto at = m.last_check.steady_at == steady_time{} ? std::chrono::steady_clock::now() : m.last_check.steady_at;
        leader_positions_.emplace_back(pos, at);
        if (leader_positions_.size() > max_positions) {
            leader_positions_.pop_front();
        }
    }
}

std::optional<std::chrono::milliseconds> eligibility::replay_delay(std::uint64_t replayed, steady_time checked) const {
    // The first sample past the replay point: the leader stood there then.
    const auto it = std::find_if(leader_positions_.begin(), leader_positions_.end(),
                                 [&](const auto& s) { return s.first > replayed; });
    if (it == leader_positions_.end() || checked == steady_time{}) {
        return std::chrono::milliseconds{0};
    }
    return std::max(std::chrono::milliseconds{0},
                    std::chrono::duration_cast<std::chrono::milliseconds>(checked - it->second));
}

bool eligibility::within_lag(const conf::listener_config& l, const member_view& m, int rise) {
    auto& g = gates_[{l.name, m.id}];
    g.seen = true;
    const auto& limit = l.max_lag;
    const auto& bytes = m.replay_lag_bytes;
    const auto& time = m.replay_lag_time;
    if (!limit.any() || (!bytes && !time)) {
        // No limit, or unknown (no leader): in, and the history starts over.
        g = gate{};
        g.seen = true;
        return true;
    }
    const bool fresh = m.last_check.steady_at != g.sample;
    g.sample = m.last_check.steady_at;
    if (!fresh) {
        return g.in;  // a rebuild for another member's check: nothing new about this one
    }
    const auto below = [&](double fraction) {
        return (!limit.bytes || !bytes || static_cast<double>(*bytes) <= static_cast<double>(*limit.bytes) * fraction) &&
               (!limit.time || !time ||
                static_cast<double>(time->count()) <= static_cast<double>(limit.time->count()) * fraction);
    };
    if (g.in) {
        if (!below(1.0)) {
            g.in = false;
            g.good = 0;
        }
        return g.in;
    }
    if (!below(limit.return_below)) {
        g.good = 0;
    } else if (++g.good >= rise) {
        g.in = true;
        g.good = 0;
    }
    return g.in;
}

void eligibility::apply(topology& t, const std::vector<conf::listener_config>& listeners, int rise) {
    note_leader(t);
    for (auto& m : t.members) {
        if (m.replay_lag_bytes && m.report) {
            const auto replayed = m.report->replayed_position ? m.report->replayed_position : m.report->wal_position;
            m.replay_lag_time = *m.replay_lag_bytes == 0 ? std::chrono::milliseconds{0}
                                                         : *replay_delay(*replayed, m.last_check.steady_at);
        }
    }
    for (auto& [key, g] : gates_) {
        g.seen = false;
    }
    t.classes.clear();
    for (const auto& l : listeners) {
        listener_class c;
        c.listener = l.name;
        c.role = l.role;
        c.fallback_roles = l.fallback;
        // Each replica's lag gate, once per listener and whatever else keeps it
        // out, so the hysteresis sees every one of its checks.
        std::vector<char> lag_ok(t.members.size(), 1);
        for (std::size_t i = 0; i < t.members.size(); ++i) {
            if (replica(t.members[i])) {
                lag_ok[i] = within_lag(l, t.members[i], rise) ? 1 : 0;
            }
        }
        // Why a class member is kept out; empty: eligible.
        const auto filter = [&](std::size_t i, listener_role role) -> std::string {
            const auto& m = t.members[i];
            if (!l.allows(m.name)) {
                return "not in the listener's members";
            }
            if (!conf::routes_replicas(role)) {
                return {};  // the leader: writes go there whatever its weight or tags
            }
            if (!has_tags(m, l.tags)) {
                return "tags do not match the listener's";
            }
            if (m.weight == 0) {
                return "weight 0";
            }
            if (t.leader && *t.leader == i) {
                return {};  // `any`'s leader
            }
            if (m.report->noloadbalance) {
                return "tagged noloadbalance";
            }
            if (!l.allow_archive_recovery && m.streaming == std::optional<bool>(false)) {
                return "not streaming (archive recovery)";
            }
            if (!lag_ok[i]) {
                std::string why = "replay lag";
                if (m.replay_lag_bytes) {
                    why += " " + std::to_string(*m.replay_lag_bytes) + " bytes";
                }
                if (m.replay_lag_time) {
                    why += " " + std::to_string(m.replay_lag_time->count()) + " ms";
                }
                return why + " over max_lag (back below " + std::to_string(static_cast<int>(l.max_lag.return_below * 100)) +
                       "% for " + std::to_string(rise) + " checks)";
            }
            return {};
        };
        for (std::size_t i = 0; i < t.members.size(); ++i) {
            if (!in_class(t, i, l.role)) {
                continue;
            }
            auto why = filter(i, l.role);
            if (why.empty()) {
                c.eligible.push_back(i);
            } else {
                const bool drains = l.allows(t.members[i].name);
                c.excluded.push_back({t.members[i].id, std::move(why), drains});
            }
        }
        for (const auto role : l.fallback) {
            std::vector<std::size_t> set;
            for (std::size_t i = 0; i < t.members.size(); ++i) {
                if (in_class(t, i, role) && filter(i, role).empty()) {
                    set.push_back(i);
                }
            }
            c.fallbacks.push_back(std::move(set));
        }
        t.classes.push_back(std::move(c));
    }
    std::erase_if(gates_, [](const auto& kv) { return !kv.second.seen; });
}

}  // namespace patroxy::health
