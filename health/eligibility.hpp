#pragma once
// Which members each listener may send new sessions to: the listener's class
// (write, read, sync, async, any, standby_leader), narrowed by its filters
// (members, tags, weight, noloadbalance, streaming, lag), with fallbacks.
//
// Lag has hysteresis, kept here between snapshots per (listener, member): a
// replica past `max_lag` leaves at once, and comes back only after `rise` of
// its own checks in a row below `return_below` of the limit, so a lag that
// hovers at the limit cannot flap. Replay delay in time is measured from a
// history of the leader's positions, each stamped with the (steady) time of
// the leader's check that saw it: the replica's own check time minus the time
// the leader was first seen past the replica's replay point. It is a lower
// bound that never reads a check taken before the leader's move as lag, and
// it is zero on an idle cluster, where "now minus the last replayed commit"
// would grow without bound. Lag is unknown without a leader: unknown is in.

#include "conf/config.hpp"
#include "health/topology.hpp"

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace patroxy::health {

class eligibility {
public:
    /// Fills `t.classes` for `listeners` (and each replica's replay_lag_time).
    /// `rise`: good checks in a row a lagging replica needs to come back.
    void apply(topology& t, const std::vector<conf::listener_config>& listeners, int rise);

private:
    struct gate {
        bool in = true;          ///< within the limit (or back under the low mark)
        int good = 0;            ///< checks in a row under the low mark while out
        steady_time sample{};    ///< the member check last counted
        bool seen = false;       ///< touched by this apply (the rest are forgotten)
    };
    void note_leader(const topology& t);
    std::optional<std::chrono::milliseconds> replay_delay(std::uint64_t replayed, steady_time checked) const;
    bool within_lag(const conf::listener_config& l, const member_view& m, int rise);

    std::map<std::pair<std::string, member_id>, gate> gates_;
    /// The leader's WAL position each time it was seen to move, oldest first,
    /// with the steady time of the check that saw it.
    std::deque<std::pair<std::uint64_t, steady_time>> leader_positions_;
    std::optional<member_id> leader_;
    std::optional<int> leader_timeline_;
};

}  // namespace patroxy::health
