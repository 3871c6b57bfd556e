#pragma once
// patroxy's configuration as plain structs. Defaults equal the seed's
// haproxy.cfg and keepalived.conf (see shared/seed/README.md); loader.cpp fills
// them from YAML and validates every field in one pass.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace patroxy::conf {

using std::chrono::milliseconds;

/// What a listener routes to.
enum class listener_role { write, read };

/// How the read listener spreads sessions over eligible members.
enum class balance_mode { roundrobin };

/// Log verbosity, most verbose first.
enum class log_level { debug, info, warn, error };

/// Optional HTTP basic auth credentials.
struct basic_auth {
    std::string username;
    std::string password;
};

/// A Patroni REST API endpoint, already split from its URL.
struct api_endpoint {
    std::string host;          ///< IP literal
    std::uint16_t port = 8008;
    std::string url;           ///< as written, for logs and the stats page
};

/// One PostgreSQL + Patroni node.
struct member_config {
    std::string name;
    std::string host;            ///< IP literal of PostgreSQL
    std::uint16_t port = 5432;   ///< PostgreSQL port
    api_endpoint api;            ///< Patroni REST API
    std::optional<basic_auth> api_auth;
};

/// One client-facing port (the seed's `listen master` / `listen replicas`).
struct listener_config {
    std::string name;
    listener_role role = listener_role::write;
    std::string bind = "0.0.0.0";
    std::uint16_t port = 5000;
    int maxconn = 10000;
    balance_mode balance = balance_mode::roundrobin;
    /// Indexes into config::members this listener may route to (all by default).
    std::vector<std::size_t> members;
};

/// Patroni REST checks: HAProxy's `inter`, `fall`, `rise`, plus what Patroni tells.
struct health_config {
    milliseconds interval{3000};
    milliseconds fast_interval{500};      ///< while a member or the cluster is changing (writes resume within 1 s of a promotion)
    milliseconds timeout{2000};           ///< one whole check: connect, request, answer
    int fall = 3;
    int rise = 2;
    std::optional<std::uint64_t> max_lag_bytes;  ///< replicas further behind get no reads
    bool read_fallback_to_leader = false;
};

/// Session timings (the seed's `defaults` section).
struct timeouts_config {
    milliseconds connect{5000};
    milliseconds client_idle{60 * 60 * 1000};
    milliseconds server_idle{60 * 60 * 1000};
    int retries = 2;                       ///< further members tried after a failed connect
    milliseconds wait_for_backend{5000};   ///< hold a new client this long for a member (`timeout queue`)
    milliseconds startup{10000};           ///< a client's first packet must arrive within this
    milliseconds drain{30000};             ///< on SIGTERM, sessions get this long to finish
};

/// The stats HTTP server (the seed's `listen stats`).
struct stats_config {
    bool enabled = true;
    std::string bind = "0.0.0.0";
    std::uint16_t port = 7000;
    std::optional<basic_auth> auth;
};

/// VRRPv3 virtual IP (the seed's keepalived.conf).
struct vip_config {
    bool enabled = false;
    std::string interface = "eth0";
    std::string address;             ///< IPv4 literal
    int prefix = 32;
    int virtual_router_id = 51;
    int priority = 100;
    milliseconds advert_interval{1000};
    bool preempt = true;
    milliseconds preempt_delay{0};
    std::vector<std::string> unicast_peers;  ///< empty: multicast to 224.0.0.18
    int garp_count = 5;
    milliseconds garp_interval{200};
    int track_weight = 50;                   ///< priority drop while patroxy cannot route writes; 0: FAULT
    milliseconds unhealthy_after{10000};     ///< no leader for this long counts as unhealthy
    /// As backup, connect to the master's stats port this often: refused
    /// (its patroxy is dead, its host is up) means take over now. 0: off.
    milliseconds peer_probe_interval{250};
};

/// Where and how much to log.
struct log_config {
    log_level level = log_level::info;
};

/// The whole file.
struct config {
    std::string source;                 ///< path it was read from
    std::string scope = "postgres-cluster";
    int workers = 0;                    ///< 0: one per core
    std::vector<member_config> members;
    std::vector<listener_config> listeners;
    health_config health;
    timeouts_config timeouts;
    stats_config stats;
    vip_config vip;
    log_config log;

    /// The listeners the seed has: write :5000 and read :5001 over every member.
    static std::vector<listener_config> default_listeners(std::size_t member_count);
};

std::string_view to_string(listener_role r);
std::string_view to_string(log_level l);

}  // namespace patroxy::conf
