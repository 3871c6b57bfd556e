#pragma once
// What one member's Patroni says about itself in `GET /patroni`, parsed without
// I/O. Patroni 3.x says role "master", 4.x "primary"; both mean the leader.

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patroxy::health {

enum class patroni_role { primary, standby_leader, replica, unknown };

struct patroni_report {
    patroni_role role = patroni_role::unknown;
    std::string role_text;          ///< as Patroni wrote it
    std::string state;              ///< "running", "streaming", "starting", "stopped", ...
    std::optional<int> timeline;
    /// Leader: its current WAL position. Replica: the furthest of received and replayed.
    std::optional<std::uint64_t> wal_position;
    std::optional<std::uint64_t> replayed_position;
    /// Replica: when the last transaction it replayed committed on the leader
    /// (`xlog.replayed_timestamp`): its replay delay while it is behind.
    std::optional<std::chrono::system_clock::time_point> replayed_at;
    /// Replica: "streaming" or "in archive recovery" (Patroni 3.0.4+); empty when not said.
    std::string replication_state;
    /// Replica: Patroni counts it a synchronous (or quorum) standby (`sync_standby`,
    /// `quorum_standby`: what its /sync and /quorum answer 200 for).
    bool sync_standby = false;
    bool pause = false;             ///< cluster in maintenance mode
    bool noloadbalance = false;
    bool nofailover = false;
    std::map<std::string, std::string> tags;   ///< every tag, rendered as text
    int streaming_replicas = 0;     ///< leader only: pg_stat_replication rows in state streaming
    std::vector<std::string> sync_standbys;  ///< leader only: application_names with sync_state sync/quorum
    std::vector<std::string> streaming_standbys;  ///< leader only: application_names in state streaming
    std::string patroni_version;
    std::string scope;

    /// PostgreSQL is up and serving in its role ("streaming" from Patroni 3.1 on).
    bool running() const { return state == "running" || state == "streaming"; }
    bool claims_leadership() const {
        return role == patroni_role::primary || role == patroni_role::standby_leader;
    }
};

/// Containers nested deeper than this make an answer a failed check: Patroni
/// nests four levels at most, and readers of the parsed value recurse.
inline constexpr int max_json_depth = 16;

/// Parses a /patroni body. On failure returns nullopt and sets `why`.
std::optional<patroni_report> parse_patroni(std::string_view body, std::string& why);

/// Parses untrusted JSON without throwing or recursing: a discarded value,
/// with `why` set, when it is invalid or nests deeper than `max_depth`.
nlohmann::json parse_json_bounded(std::string_view body, int max_depth, std::string& why);

patroni_role role_from_text(std::string_view role);
std::string_view to_string(patroni_role r);

}  // namespace patroxy::health
