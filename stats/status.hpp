#pragma once
// One consistent picture of patroxy for the stats page, /status.json and
// /metrics: the latest topology, the summed traffic counters and the process.
// Built on the control thread at each request; renderers are pure.

#include "conf/config.hpp"
#include "health/monitor.hpp"
#include "health/topology.hpp"
#include "proxy/server.hpp"
#include "vip/vrrp_instance.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace patroxy::stats {

using wall_time = std::chrono::system_clock::time_point;

/// What the last reloads did (SIGHUP).
struct reload_info {
    std::uint64_t generation = 0;              ///< of the configuration running now
    wall_time last_at{};                       ///< the last attempt, applied or not
    std::string last_result = "none";          ///< "ok", "failed", "none"
    std::vector<std::string> last_errors;      ///< file:line:col lines, or why it could not apply
    std::vector<std::string> restart_needed;   ///< settings that differ but wait for a restart
    std::uint64_t ok_total = 0;
    std::uint64_t failed_total = 0;
};

struct process_info {
    std::string version = PATROXY_VERSION;
    wall_time started{};
    std::size_t workers = 0;
    long pid = 0;
    std::string config_file;
    reload_info reload;
    int connections = 0;           ///< client connections open now, every listener
    int connection_limit = 0;      ///< where accepting pauses (global maxconn within the descriptor limit)
    long descriptor_limit = 0;     ///< RLIMIT_NOFILE as it is now
    std::uint64_t log_dropped = 0; ///< log lines dropped because the writer fell behind
};

/// One Patroni cluster as of the request.
struct cluster_status {
    std::string label;
    health::topology_ptr topology;
    health::monitor::leader_change last_leader_change;
    std::uint64_t leader_changes = 0;
    std::uint64_t split_brain_events = 0;
    std::optional<health::dcs_state> dcs;
};

/// The fields of one cluster (cfg its cluster_view, topology and the
/// cluster counters its own); a whole status has the first's in them and
/// every cluster in `clusters`.
struct status {
    conf::config_ptr cfg;
    health::topology_ptr topology;
    std::map<std::string, proxy::listener_totals> listeners;   ///< by listener name
    std::map<std::string, double> session_rate;   ///< by listener name, new sessions per second (last 10 s)
    health::monitor::leader_change last_leader_change;
    std::uint64_t leader_changes = 0;
    std::uint64_t split_brain_events = 0;
    std::optional<health::dcs_state> dcs;   ///< with `dcs:` configured
    process_info process;
    wall_time now{};
    /// The longest-running sessions (at most `session_list_limit`), when the
    /// request asked the workers; empty for /metrics and /health.
    std::vector<proxy::session_view> sessions;
    vip::vip_status vip;
    std::size_t stats_connections = 0;  ///< open connections to the stats port
    /// Every cluster, in the configuration's order (one for a single-cluster file).
    std::vector<cluster_status> clusters;
};

/// `s` narrowed to cluster `i`: its configuration view, topology, DCS and
/// counters in the single-cluster fields (no session list).
status cluster_part(const status& s, std::size_t i);

/// The VIP's state for people: disabled, off (and why), or the VRRP state.
std::string vip_state_name(const status& s);

/// Sessions /status.json lists at most (oldest first); the page shows fewer.
constexpr std::size_t session_list_limit = 1000;
constexpr std::size_t session_page_limit = 50;

/// Patroni's own words for a member's role: Leader, Standby Leader, Sync Standby, Replica.
std::string patroni_role_name(const status& s, std::size_t member);

/// What a member (a position in the topology) is for on a listener:
/// "routing" or why not ("not the leader", "lag", ...).
std::string role_on_listener(const status& s, const conf::listener_config& listener, std::size_t member);

/// A listener's totals (zero when it has none yet).
const proxy::listener_totals& totals_of(const status& s, const std::string& listener);
/// A listener's totals for one member (zero when it has none yet).
const proxy::member_totals& totals_of(const proxy::listener_totals& l, const std::string& member);

/// 200 for /health: this patroxy can route writes right now.
bool can_route_writes(const status& s);

/// Everything the page shows, with stable field names (README: /status.json).
nlohmann::json to_json(const status& s);

/// The self-contained, self-refreshing HTML page.
std::string render_html(const status& s);

/// Prometheus text exposition (prometheus-cpp's serializer).
std::string render_metrics(const status& s);

}  // namespace patroxy::stats
