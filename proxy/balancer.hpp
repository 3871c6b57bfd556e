#pragma once
// Which member a new session goes to. Pure: the topology, the listener and a
// round-robin turn in, an ordered list of members out.

#include "conf/config.hpp"
#include "health/topology.hpp"

#include <vector>

namespace patroxy::proxy {

/// Members eligible for a new session on `listener`, first choice first.
/// Write: the leader. Read: the readable replicas starting at position
/// `turn` of the rotation, else the leader when `read_fallback`.
std::vector<std::size_t> candidates(const health::topology& topo, const conf::listener_config& listener,
                                    bool read_fallback, std::size_t turn);

/// Whether a session on `member` may stay open under `topo`.
bool keeps_session(const health::topology& topo, conf::listener_role role, std::size_t member);

}  // namespace patroxy::proxy
