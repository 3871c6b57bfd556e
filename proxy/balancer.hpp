#pragma once
// Which member a new session goes to. Pure: the topology (with each
// listener's class, health/eligibility.hpp), the listener, a turn and the
// sessions each member has in; an ordered list of members out.

#include "conf/config.hpp"
#include "health/topology.hpp"

#include <atomic>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace patroxy::proxy {

struct member_book;

/// Where a new session on a listener may go.
struct choice {
    std::vector<std::size_t> members;   ///< positions in topo.members, first choice first
    std::size_t via = 0;                ///< 0: the listener's class; i+1: its fallback i
    conf::listener_role role = conf::listener_role::write;   ///< the class `via` names
    bool full = false;                  ///< members are eligible, but each is at its maxconn
};

/// Members for a new session on `listener`: its class's eligible members, or
/// its first fallback with any; the preferred ones (`prefer`) alone when one
/// is there; in `balance` order (`turn` rotates roundrobin, by weight, and
/// breaks leastconn's ties); members at their maxconn left out. `books`,
/// aligned with topo.members (may be empty: no counts), give each member's
/// sessions on this listener.
choice candidates(const health::topology& topo, const conf::listener_config& listener, std::size_t turn,
                  std::span<member_book* const> books = {});

/// A session of `listener` routed by class `role` may stay on `member`: the
/// member still holds that role, or one the listener may fall back to.
/// Sessions name their class by role, not by position: a reload may reorder
/// the fallbacks under them. Leaving the class for a soft reason (lag, tags,
/// weight, noloadbalance) is `drain_reason`'s to tell.
bool keeps_session(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                   health::member_id member);

/// A session that `keeps_session` would cut may stay while its member's API
/// fails its checks (hung, slow) but Patroni's fresh DCS key says the member
/// runs as a streaming replica: a hung API is no reason to cut reads. Only
/// for classes whose rule needs nothing the REST answer alone tells: `read`
/// and `any` with no `max_lag` (lag and sync state cannot be checked while
/// the API is silent). The caller keeps only sessions the member has
/// answered; one still connecting or unanswered goes elsewhere.
bool keeps_while_api_fails(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                           health::member_id member);

/// Why a session of `listener` routed by class `role` on `member` should
/// drain at its next idle point (the member left a read class for a reason
/// that leaves it safe), or empty. Write classes never drain: an announced
/// switchover holds new writes only.
std::string drain_reason(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                         health::member_id member);

/// Takes one of `book`'s slots under `maxconn` (0: no limit); false when full.
bool reserve(member_book& book, int maxconn);

}  // namespace patroxy::proxy
