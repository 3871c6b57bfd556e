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

#include <string>
#include <vector>

namespace patroxy::stats {

using wall_time = std::chrono::system_clock::time_point;

struct process_info {
    std::string version = PATROXY_VERSION;
    wall_time started{};
    std::size_t workers = 0;
    std::string config_file;
    wall_time last_reload{};
};

struct status {
    const conf::config* cfg = nullptr;
    health::topology_ptr topology;
    std::vector<proxy::listener_totals> listeners;
    std::vector<double> session_rate;   ///< per listener, new sessions per second (last 10 s)
    health::monitor::leader_change last_leader_change;
    std::uint64_t leader_changes = 0;
    std::uint64_t split_brain_events = 0;
    process_info process;
    wall_time now{};
    /// The longest-running sessions (at most `session_list_limit`), when the
    /// request asked the workers; empty for /metrics and /health.
    std::vector<proxy::session_view> sessions;
    vip::vip_status vip;
};

/// The VIP's state for people: disabled, off (and why), or the VRRP state.
std::string vip_state_name(const status& s);

/// Sessions /status.json lists at most (oldest first); the page shows fewer.
constexpr std::size_t session_list_limit = 1000;
constexpr std::size_t session_page_limit = 50;

/// Patroni's own words for a member's role: Leader, Standby Leader, Sync Standby, Replica.
std::string patroni_role_name(const status& s, std::size_t member);

/// What a member is for on a listener: "routing" or why not ("not the leader", "lag", ...).
std::string role_on_listener(const status& s, std::size_t listener, std::size_t member);

/// 200 for /health: this patroxy can route writes right now.
bool can_route_writes(const status& s);

/// Everything the page shows, with stable field names (README: /status.json).
nlohmann::json to_json(const status& s);

/// The self-contained, self-refreshing HTML page.
std::string render_html(const status& s);

/// Prometheus text exposition (prometheus-cpp's serializer).
std::string render_metrics(const status& s);

}  // namespace patroxy::stats
