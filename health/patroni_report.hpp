#pragma once
// What one member's Patroni says about itself in `GET /patroni`, parsed without
// I/O. Patroni 3.x says role "master", 4.x "primary"; both mean the leader.

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
    bool pause = false;             ///< cluster in maintenance mode
    bool noloadbalance = false;
    bool nofailover = false;
    std::map<std::string, std::string> tags;   ///< every tag, rendered as text
    int streaming_replicas = 0;     ///< leader only: pg_stat_replication rows in state streaming
    std::vector<std::string> sync_standbys;  ///< leader only: application_names with sync_state sync/quorum
    std::string patroni_version;
    std::string scope;

    /// PostgreSQL is up and serving in its role ("streaming" from Patroni 3.1 on).
    bool running() const { return state == "running" || state == "streaming"; }
    bool claims_leadership() const {
        return role == patroni_role::primary || role == patroni_role::standby_leader;
    }
};

/// Parses a /patroni body. On failure returns nullopt and sets `why`.
std::optional<patroni_report> parse_patroni(std::string_view body, std::string& why);

patroni_role role_from_text(std::string_view role);
std::string_view to_string(patroni_role r);

}  // namespace patroxy::health
