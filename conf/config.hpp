#pragma once
// patroxy's configuration as plain structs. Defaults equal the seed's
// haproxy.cfg and keepalived.conf (see shared/seed/README.md); loader.cpp fills
// them from YAML and validates every field in one pass.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patroxy::conf {

using std::chrono::milliseconds;

/// What a listener routes to, as Patroni's REST checks name the classes:
/// `write` the primary that holds the leader lock (/primary); `read` running
/// replicas (/replica); `sync` synchronous or quorum standbys (/sync,
/// /quorum); `async` replicas that are neither (/async); `any` the leader and
/// the replicas (/read-only); `standby_leader` the leader of a standby
/// cluster (/standby-leader), which `write` never routes to.
enum class listener_role { write, read, sync, async, any, standby_leader };

/// How a listener spreads sessions over its eligible members: `roundrobin`
/// in turn (by weight), `leastconn` to the fewest sessions per weight,
/// `first` to the first member in order with room under its maxconn.
enum class balance_mode { roundrobin, leastconn, first };

/// Tags a member must carry (`tags: {dc: a}`), each rendered as text.
using tag_selector = std::vector<std::pair<std::string, std::string>>;

/// How far behind the leader a replica may be and still take new sessions.
/// Past either limit it leaves; it returns only below `return_below` of
/// both, after `rise` checks in a row there (so a lag near the limit cannot flap).
struct lag_limit {
    std::optional<std::uint64_t> bytes;
    std::optional<milliseconds> time;    ///< replay delay
    double return_below = 0.5;
    bool any() const { return bytes || time; }
    bool operator==(const lag_limit&) const = default;
};

/// Log verbosity, most verbose first.
enum class log_level { debug, info, warn, error };

/// Optional HTTP basic auth credentials.
struct basic_auth {
    std::string username;
    std::string password;
    bool operator==(const basic_auth&) const = default;
};

/// TLS for an HTTPS client (Patroni's REST API, etcd): the CA that signs the
/// server's certificate, and a client certificate when the server asks for one.
struct tls_client_config {
    std::string ca_file;       ///< empty: the system's CAs
    std::string cert_file;     ///< with key_file: a client certificate
    std::string key_file;
    bool verify = true;        ///< check the server's certificate and name
    bool operator==(const tls_client_config&) const = default;
};

/// A Patroni REST API endpoint, already split from its URL.
struct api_endpoint {
    std::string host;          ///< IP literal or a name (resolved at run time)
    std::uint16_t port = 8008;
    std::string url;           ///< as written, for logs and the stats page
    bool https = false;
};

/// One PostgreSQL + Patroni node.
struct member_config {
    std::string name;
    std::string host;            ///< IP literal of PostgreSQL
    std::uint16_t port = 5432;   ///< PostgreSQL port
    api_endpoint api;            ///< Patroni REST API
    std::optional<basic_auth> api_auth;
    std::optional<tls_client_config> api_tls;   ///< for an https:// API
    /// Its share of new sessions (HAProxy's server `weight`); 0: none, and
    /// its open sessions drain at their next idle point.
    int weight = 1;
    /// Sessions per listener at most (HAProxy's server `maxconn`); past it a
    /// new session waits within wait_for_backend. 0: no limit.
    int maxconn = 0;
};

/// Patroni's DCS, read for the leader lock and the member list (etcd).
struct dcs_config {
    bool enabled = false;
    enum class kind { etcd3, etcd2 } type = kind::etcd3;
    /// host:port of each etcd member (names allowed); tried in turn.
    std::vector<std::pair<std::string, std::uint16_t>> hosts;
    bool https = false;
    std::string ns = "/service";         ///< Patroni's `namespace`
    std::string scope;                    ///< Patroni's `scope`; empty: the top-level scope
    std::optional<basic_auth> auth;       ///< etcd's user (v3: a token from /v3/auth/authenticate)
    std::optional<tls_client_config> tls;
    milliseconds timeout{2000};           ///< one request, or the silence a watch may keep
    milliseconds resync_interval{5000};   ///< a full range again this often (etcd 3.4's lost watch events)
    /// The view is stale (routing goes back to the members' own answers) when
    /// nothing came from etcd for this long; 0: the cluster's ttl.
    milliseconds stale_after{0};
    /// For members discovered from the DCS (a file's member has its own).
    std::optional<basic_auth> api_auth;
    std::optional<tls_client_config> api_tls;
    bool operator==(const dcs_config&) const = default;
};

/// One client-facing port (the seed's `listen master` / `listen replicas`).
struct listener_config {
    std::string name;
    listener_role role = listener_role::write;
    std::string bind = "0.0.0.0";
    std::uint16_t port = 5000;
    int maxconn = 10000;
    balance_mode balance = balance_mode::roundrobin;
    /// Names of the members this listener may route to; empty: every member.
    std::vector<std::string> members;
    /// Classes tried in order when the listener's own has no eligible member
    /// (`sync` falling back to `read`, `read` to `write`: the leader).
    std::vector<listener_role> fallback;
    /// Replicas further behind get no new sessions; unset: health.max_lag.
    lag_limit max_lag;
    /// Replicas not streaming (restoring from the archive) are eligible too.
    bool allow_archive_recovery = false;
    /// Only members with every one of these tags.
    tag_selector tags;
    /// Members with every one of these tags first; others only when none is eligible.
    tag_selector prefer;
    /// The cluster it routes to (a `clusters:` entry's name); empty: the first.
    std::string cluster;

    /// Whether this listener may route to the member called `name`.
    bool allows(std::string_view name) const;
    /// The listening socket differs (what a reload must bind anew).
    bool same_socket(const listener_config& o) const { return bind == o.bind && port == o.port; }
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
    /// Patroni before 3.0.3 lets a leader that stalled (its process stopped,
    /// or stuck on a frozen PostgreSQL) write the leader key back when it
    /// resumes, and the new leader's writes are rewound (patroni#2689). When
    /// the lock leaves such a leader while it hangs, new writes wait and its
    /// open sessions are paused until it answers demoted or stopped, takes the
    /// lock back, or this long has passed. nullopt: twice the cluster's ttl;
    /// 0: never.
    std::optional<milliseconds> handback_guard;
};

/// Session timings (the seed's `defaults` section).
struct timeouts_config {
    milliseconds connect{5000};
    milliseconds client_idle{60 * 60 * 1000};
    milliseconds server_idle{60 * 60 * 1000};
    int retries = 2;                       ///< further members tried after a failed connect
    /// Connects one session may make in all (every round of retries counts):
    /// once spent, only a change of routing brings another attempt, so no
    /// client can make patroxy open backend connections without bound.
    int max_attempts = 8;
    milliseconds wait_for_backend{5000};   ///< hold a new client this long for a member (`timeout queue`)
    milliseconds startup{10000};           ///< a client's first packet must arrive within this
    milliseconds server_startup{10000};    ///< a member must answer the forwarded first packet within this
    milliseconds drain{30000};             ///< on SIGTERM, sessions get this long to finish
};

/// The stats HTTP server (the seed's `listen stats`).
struct stats_config {
    bool enabled = true;
    std::string bind = "0.0.0.0";
    std::uint16_t port = 7000;
    std::optional<basic_auth> auth;
    int maxconn = 64;                      ///< open connections at most; past it the oldest idle one goes
    milliseconds request_timeout{5000};    ///< a whole request (headers) must arrive within this
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

/// One Patroni cluster: its scope, its members (or its DCS), its checks.
struct cluster_config {
    std::string name;                     ///< the `cluster` label on the page and in metrics
    std::string scope = "postgres-cluster";
    std::vector<member_config> members;
    health_config health;
    dcs_config dcs;
};

/// The whole file, as one immutable snapshot: the daemon and the workers
/// hold a config_ptr, never a reference into a live file, and a session
/// keeps the one it started with.
struct config {
    std::string source;                 ///< path it was read from
    std::uint64_t generation = 0;       ///< 1 for the file read at start, +1 per applied reload
    std::string scope = "postgres-cluster";
    int workers = 0;                    ///< 0: one per core
    /// Client connections across every listener (HAProxy's `global maxconn`);
    /// 0: the sum of the listeners' maxconn. Accepting pauses there.
    int maxconn = 0;
    // The first (in a single-cluster file, the only) cluster: its scope,
    // members, checks and DCS stay at the top, as such a file has them.
    std::vector<member_config> members;
    std::vector<listener_config> listeners;
    health_config health;
    dcs_config dcs;
    std::string cluster_name;           ///< the first cluster's label; empty: its scope
    /// A `clusters:` file's second and later clusters, in its order.
    std::vector<cluster_config> more_clusters;
    timeouts_config timeouts;
    stats_config stats;
    vip_config vip;
    log_config log;
    /// Where a running patroxy hands its listening sockets to the next one
    /// (`patroxy --upgrade`); empty: no binary upgrade without a restart.
    std::string control_socket = "/run/patroxy/patroxy.sock";

    /// The listeners the seed has: write :5000 and read :5001 over every member.
    static std::vector<listener_config> default_listeners();
    /// The member called `name`, or nullptr.
    const member_config* member(std::string_view name) const;
    /// The listener called `name`, or nullptr.
    const listener_config* listener(std::string_view name) const;

    /// Clusters in all: the first (top-level keys) and the more_clusters.
    std::size_t cluster_count() const { return 1 + more_clusters.size(); }
    /// Cluster `i` (0: the top-level one), as a whole.
    cluster_config cluster(std::size_t i) const;
    /// Cluster `i`'s label: its name, else its scope.
    std::string cluster_label(std::size_t i) const;
    /// The index of the cluster labelled `label` (empty: the first), or nullopt.
    std::optional<std::size_t> cluster_index(std::string_view label) const;
    /// The index of the cluster `l` routes to (0 when it names none known).
    std::size_t cluster_of(const listener_config& l) const { return cluster_index(l.cluster).value_or(0); }
    /// Cluster `i`'s members and checks, without copying.
    const std::vector<member_config>& members_of(std::size_t i) const { return i == 0 ? members : more_clusters[i - 1].members; }
    const health_config& health_of(std::size_t i) const { return i == 0 ? health : more_clusters[i - 1].health; }
};

using config_ptr = std::shared_ptr<const config>;

/// Cluster `i` must have a leader for this patroxy to count as healthy
/// (/health, the VIP's tracking): every cluster a write or standby_leader
/// listener routes to; with none, every cluster.
bool needs_leader(const config& cfg, std::size_t i);

/// The configuration as cluster `i`'s monitor sees it: that cluster's scope,
/// members, checks and DCS at the top, only the listeners that route to it,
/// no other cluster; everything else as in `cfg`.
config_ptr cluster_view(const config& cfg, std::size_t i);

/// What differs between the running configuration and the next one but only
/// takes effect after a restart, one "key: old -> new" each (a reload applies
/// everything else and says these need a restart).
std::vector<std::string> restart_needed(const config& running, const config& next);

/// Sessions a listener past its maxconn may still hold while they are told
/// 53300; past that, accepting on it pauses (the kernel's backlog waits).
inline constexpr int refusal_slots = 32;

/// Descriptors a configuration needs: two per session up to the process-wide
/// ceiling, and those reserved for what client load must never starve
/// (listening sockets, event loops, health checks, the stats port, VRRP).
struct descriptor_budget {
    long sessions = 0;    ///< the connection ceiling: maxconn, or the listeners' sum
    long per_session = 2; ///< client and member socket
    long reserved = 0;
    long needed() const { return sessions * per_session + reserved; }
    /// The ceiling that fits `limit` descriptors (never above `sessions`).
    long sessions_within(long limit) const;
};
descriptor_budget descriptors_for(const config& cfg, std::size_t workers);

/// The health section's keys from before listeners had their own: a
/// listener without `max_lag` takes health.max_lag, a read listener without
/// `fallback` falls back to the leader (write, then standby_leader) with
/// health.read_fallback_to_leader.
/// The loader calls it; so must code that builds a config by hand.
void inherit_health_keys(config& cfg);

std::string_view to_string(listener_role r);
std::string_view to_string(balance_mode b);
/// The class routes to replicas (read, sync, async, and any's replicas).
inline bool routes_replicas(listener_role r) { return r != listener_role::write && r != listener_role::standby_leader; }
std::string_view to_string(log_level l);

}  // namespace patroxy::conf
