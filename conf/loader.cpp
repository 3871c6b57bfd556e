#include "conf/loader.hpp"

#include "conf/duration.hpp"
#include "conf/reader.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace patroxy::conf {

using detail::is_host;
using detail::is_ip;
using detail::is_ipv4;
using detail::is_wildcard;
using detail::join_lines;
using detail::reader;
using detail::split_host_port;

// "http://10.0.0.1:8008", "https://pg0.example.org:8008/" (path ignored: patroxy asks /patroni).
std::optional<api_endpoint> parse_api_url(const std::string& url, std::string& why) {
    api_endpoint ep;
    ep.url = url;
    if (url.rfind("https://", 0) == 0) {
        ep.https = true;
    } else if (url.rfind("http://", 0) != 0) {
        why = "expected an http:// or https:// URL, got '" + url + "'";
        return std::nullopt;
    }
    if (!split_host_port(url, ep.host, ep.port, why)) {
        why += " in '" + url + "'";
        return std::nullopt;
    }
    return ep;
}

bool valid_member_name(std::string_view s) {
    return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    });
}

bool is_ip_literal(const std::string& s) { return is_ip(s); }

namespace {

bool valid_name(const std::string& s) { return valid_member_name(s); }

void read_members(reader& r, const YAML::Node& root, const std::string& prefix, bool dcs_enabled,
                  std::vector<member_config>& out) {
    const YAML::Node seq = root["members"];
    const auto where = reader::join(prefix, "members");
    if (!seq && dcs_enabled) {
        return;  // discovered from the DCS's members/ keys
    }
    if (!seq || !seq.IsSequence() || seq.size() == 0) {
        r.problem(seq ? seq : root, where,
                  dcs_enabled ? "expected a list of members (name, host, port, api), or no key at all"
                                  : "expected a non-empty list of members (name, host, port, api), or a dcs section");
        return;
    }
    std::set<std::string> names, pg_addresses, api_addresses;
    for (std::size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node n = seq[i];
        const auto path = where + "[" + std::to_string(i) + "]";
        if (!r.check_map(n, path, {"name", "host", "port", "api", "api_auth", "api_tls", "weight", "maxconn"})) {
            continue;
        }
        member_config m;
        if (r.string(n, path, "name", m.name, true) && !valid_name(m.name)) {
            r.problem(n["name"], path + ".name", "expected letters, digits, '-', '_' or '.', at most 63");
        }
        if (r.string(n, path, "host", m.host, !dcs_enabled) && !is_host(m.host)) {
            r.problem(n["host"], path + ".host", "expected an IP address or a host name, got '" + m.host + "'");
        }
        r.integer(n, path, "port", m.port, 1, 65535);
        std::string url;
        if (r.string(n, path, "api", url, !dcs_enabled)) {
            std::string why;
            if (auto ep = parse_api_url(url, why)) {
                m.api = *ep;
            } else {
                r.problem(n["api"], path + ".api", why);
            }
        }
        m.api_auth = r.auth(n, path, "api_auth");
        m.api_tls = r.tls(n, path, "api_tls");
        r.integer(n, path, "weight", m.weight, 0, 256);
        r.integer(n, path, "maxconn", m.maxconn, 0, 1'000'000);
        if (!m.name.empty() && !names.insert(m.name).second) {
            r.problem(n["name"], path + ".name", "duplicate member name '" + m.name + "'");
        }
        if (!m.host.empty() && !pg_addresses.insert(m.host + ":" + std::to_string(m.port)).second) {
            r.problem(n["port"] ? n["port"] : n, path + ".port",
                      "duplicate PostgreSQL address " + m.host + ":" + std::to_string(m.port));
        }
        if (!m.api.host.empty() && !api_addresses.insert(m.api.host + ":" + std::to_string(m.api.port)).second) {
            r.problem(n["api"], path + ".api", "duplicate Patroni API address " + m.api.url);
        }
        out.push_back(std::move(m));
    }
}

// Two sockets clash when their ports match and their addresses overlap.
void check_port_clashes(reader& r, const YAML::Node& root, const config& cfg) {
    struct bound { std::string what; std::string bind; std::uint16_t port; YAML::Node at; std::string path; };
    std::vector<bound> sockets;
    const YAML::Node seq = root["listeners"];
    for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
        const auto& l = cfg.listeners[i];
        const YAML::Node at = seq && seq.IsSequence() && i < seq.size() ? seq[i]["port"] : root;
        sockets.push_back({"listener '" + l.name + "'", l.bind, l.port, at, "listeners[" + std::to_string(i) + "].port"});
    }
    if (cfg.stats.enabled) {
        const YAML::Node s = root["stats"];
        sockets.push_back({"the stats server", cfg.stats.bind, cfg.stats.port, s && s["port"] ? s["port"] : root, "stats.port"});
    }
    for (std::size_t i = 0; i < sockets.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            const auto& a = sockets[i];
            const auto& b = sockets[j];
            if (a.port == b.port && (a.bind == b.bind || is_wildcard(a.bind) || is_wildcard(b.bind))) {
                r.problem(a.at, a.path, "port " + std::to_string(a.port) + " is already used by " + b.what);
            }
        }
    }
}

void read_dcs(reader& r, const YAML::Node& root, const std::string& prefix, dcs_config& d) {
    const YAML::Node n = root["dcs"];
    const auto where = reader::join(prefix, "dcs");
    if (!n || !r.check_map(n, where, {"type", "hosts", "namespace", "scope", "username", "password", "tls",
                                      "timeout", "resync_interval", "stale_after", "api_auth", "api_tls"})) {
        return;
    }
    d.enabled = true;
    if (!n["type"]) {
        r.problem(n, where + ".type", "is required ('etcd3' or 'etcd')");
    }
    r.choice(n, where, "type", d.type, {{"etcd3", dcs_config::kind::etcd3}, {"etcd", dcs_config::kind::etcd2}});
    const YAML::Node hosts = n["hosts"];
    if (!hosts || !hosts.IsSequence() || hosts.size() == 0) {
        r.problem(hosts ? hosts : n, where + ".hosts", "expected a non-empty list of etcd members (host:port)");
    } else {
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            std::string host;
            std::uint16_t port = 2379;
            std::string why;
            const auto text = hosts[i].IsScalar() ? hosts[i].Scalar() : std::string{};
            if (text.rfind("https://", 0) == 0) {
                d.https = true;
            }
            if (!split_host_port(text, host, port, why)) {
                r.problem(hosts[i], where + ".hosts[" + std::to_string(i) + "]", why);
            } else {
                d.hosts.emplace_back(host, port);
            }
        }
    }
    r.string(n, where, "namespace", d.ns);
    r.string(n, where, "scope", d.scope);
    std::string user;
    std::string password;
    const bool has_user = r.string(n, where, "username", user);
    const bool has_password = r.string(n, where, "password", password);
    if (has_user != has_password) {
        r.problem(n, where, "username and password go together");
    } else if (has_user) {
        d.auth = basic_auth{user, password};
    }
    d.tls = r.tls(n, where, "tls");
    if (d.tls) {
        d.https = true;
    }
    r.duration(n, where, "timeout", d.timeout, milliseconds{100}, milliseconds{60'000});
    r.duration(n, where, "resync_interval", d.resync_interval, milliseconds{500}, milliseconds{3'600'000});
    r.duration(n, where, "stale_after", d.stale_after, milliseconds{0}, milliseconds{3'600'000});
    if (d.stale_after.count() > 0 && d.stale_after <= d.resync_interval + d.timeout) {
        r.problem(n["stale_after"], where + ".stale_after",
                  "must be longer than resync_interval + timeout (" + reader::show(d.resync_interval + d.timeout) +
                      "), or a quiet cluster reads as stale between resyncs");
    }
    d.api_auth = r.auth(n, where, "api_auth");
    d.api_tls = r.tls(n, where, "api_tls");
}

void read_health(reader& r, const YAML::Node& root, const std::string& prefix, health_config& h) {
    const YAML::Node n = root["health"];
    const auto where = reader::join(prefix, "health");
    if (!n || !r.check_map(n, where, {"interval", "fast_interval", "timeout", "fall", "rise", "max_lag",
                                         "read_fallback_to_leader", "handback_guard"})) {
        return;
    }
    if (const YAML::Node guard = n["handback_guard"]) {
        if (guard.IsScalar() && guard.Scalar() == "off") {
            h.handback_guard = milliseconds{0};
        } else {
            milliseconds g{0};
            r.duration(n, where, "handback_guard", g, milliseconds{0}, milliseconds{3'600'000});
            h.handback_guard = g;
        }
    }
    r.duration(n, where, "interval", h.interval, milliseconds{100}, milliseconds{3'600'000});
    r.duration(n, where, "fast_interval", h.fast_interval, milliseconds{100}, milliseconds{3'600'000});
    r.duration(n, where, "timeout", h.timeout, milliseconds{100}, milliseconds{60'000});
    r.integer(n, where, "fall", h.fall, 1, 100);
    r.integer(n, where, "rise", h.rise, 1, 100);
    if (const YAML::Node lag = n["max_lag"]) {
        const auto bytes = lag.IsScalar() ? parse_size(lag.Scalar()) : std::nullopt;
        if (!bytes) {
            r.problem(lag, where + ".max_lag", "expected a size in bytes such as 1048576, 512kB or 16MB, got '" +
                                                 reader::describe(lag) + "'");
        }
        h.max_lag_bytes = bytes;
    }
    r.boolean(n, where, "read_fallback_to_leader", h.read_fallback_to_leader);
    if (h.fast_interval > h.interval) {
        r.problem(n["fast_interval"], where + ".fast_interval", "must not be longer than health.interval (" +
                                                                  reader::show(h.interval) + ")");
    }
}

void read_timeouts(reader& r, const YAML::Node& root, timeouts_config& t) {
    const YAML::Node n = root["timeouts"];
    if (!n || !r.check_map(n, "timeouts", {"connect", "client_idle", "server_idle", "retries", "max_attempts",
                                           "wait_for_backend", "startup", "server_startup", "drain"})) {
        return;
    }
    const milliseconds day{24LL * 3'600'000};
    r.duration(n, "timeouts", "connect", t.connect, milliseconds{100}, milliseconds{120'000});
    r.duration(n, "timeouts", "client_idle", t.client_idle, milliseconds{1000}, day);
    r.duration(n, "timeouts", "server_idle", t.server_idle, milliseconds{1000}, day);
    r.integer(n, "timeouts", "retries", t.retries, 0, 10);
    r.integer(n, "timeouts", "max_attempts", t.max_attempts, 1, 100);
    r.duration(n, "timeouts", "wait_for_backend", t.wait_for_backend, milliseconds{0}, milliseconds{600'000});
    r.duration(n, "timeouts", "startup", t.startup, milliseconds{100}, milliseconds{600'000});
    r.duration(n, "timeouts", "server_startup", t.server_startup, milliseconds{100}, milliseconds{600'000});
    r.duration(n, "timeouts", "drain", t.drain, milliseconds{0}, milliseconds{3'600'000});
}

void read_stats(reader& r, const YAML::Node& root, stats_config& s) {
    const YAML::Node n = root["stats"];
    if (!n || !r.check_map(n, "stats", {"enabled", "bind", "port", "auth", "maxconn", "request_timeout"})) {
        return;
    }
    r.boolean(n, "stats", "enabled", s.enabled);
    r.address(n, "stats", "bind", s.bind, false);
    r.integer(n, "stats", "port", s.port, 1, 65535);
    r.integer(n, "stats", "maxconn", s.maxconn, 1, 10'000);
    r.duration(n, "stats", "request_timeout", s.request_timeout, milliseconds{100}, milliseconds{60'000});
    s.auth = r.auth(n, "stats", "auth");
}

void read_vip(reader& r, const YAML::Node& root, vip_config& v) {
    const YAML::Node n = root["vip"];
    if (!n || !r.check_map(n, "vip", {"enabled", "interface", "address", "virtual_router_id", "priority",
                                      "advert_interval", "preempt", "preempt_delay", "unicast_peers", "garp_count",
                                      "garp_interval", "track_weight", "unhealthy_after", "peer_probe_interval"})) {
        return;
    }
    v.enabled = true;  // a vip section means a VIP unless it says otherwise
    r.boolean(n, "vip", "enabled", v.enabled);
    if (r.string(n, "vip", "interface", v.interface, v.enabled) && v.interface.size() > 15) {
        r.problem(n["interface"], "vip.interface", "interface names have at most 15 characters (IFNAMSIZ)");
    }
    std::string address;
    if (r.string(n, "vip", "address", address, v.enabled)) {
        const auto slash = address.find('/');
        v.address = address.substr(0, slash);
        int prefix = 32;
        bool ok = is_ipv4(v.address);
        if (ok && slash != std::string::npos) {
            const auto p = address.substr(slash + 1);
            const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
            ok = ec == std::errc{} && end == p.data() + p.size() && prefix >= 1 && prefix <= 32;
        }
        if (!ok) {
            r.problem(n["address"], "vip.address", "expected an IPv4 address with an optional prefix such as "
                                                   "192.168.0.110/24, got '" + address + "'");
        }
        v.prefix = prefix;
    }
    // RFC 5798 5.2.2-5.2.7: VRID 1-255, priority 1-254 for a non-owner, 12-bit centisecond interval.
    r.integer(n, "vip", "virtual_router_id", v.virtual_router_id, 1, 255);
    r.integer(n, "vip", "priority", v.priority, 1, 254);
    r.duration(n, "vip", "advert_interval", v.advert_interval, milliseconds{10}, milliseconds{40'950});
    if (v.advert_interval.count() % 10 != 0) {
        r.problem(n["advert_interval"], "vip.advert_interval", "VRRPv3 counts in centiseconds: use a multiple of 10ms");
    }
    r.boolean(n, "vip", "preempt", v.preempt);
    r.duration(n, "vip", "preempt_delay", v.preempt_delay, milliseconds{0}, milliseconds{1'000'000});
    if (const YAML::Node peers = n["unicast_peers"]) {
        if (!peers.IsSequence()) {
            r.problem(peers, "vip.unicast_peers", "expected a list of IPv4 addresses");
        } else {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                const auto p = peers[i].IsScalar() ? peers[i].Scalar() : std::string{};
                if (!is_ipv4(p)) {
                    r.problem(peers[i], "vip.unicast_peers[" + std::to_string(i) + "]",
                              "expected an IPv4 address, got '" + reader::describe(peers[i]) + "'");
                } else {
                    v.unicast_peers.push_back(p);
                }
            }
        }
    }
    r.integer(n, "vip", "garp_count", v.garp_count, 0, 100);
    r.duration(n, "vip", "garp_interval", v.garp_interval, milliseconds{0}, milliseconds{10'000});
    r.integer(n, "vip", "track_weight", v.track_weight, 0, 253);
    r.duration(n, "vip", "unhealthy_after", v.unhealthy_after, milliseconds{0}, milliseconds{3'600'000});
    r.duration(n, "vip", "peer_probe_interval", v.peer_probe_interval, milliseconds{0}, milliseconds{60'000});
}

// One cluster's scope, DCS, members and checks, under `prefix` ("" for a
// single-cluster file's top level). `health` comes in with the defaults.
void read_cluster(reader& r, const YAML::Node& n, const std::string& prefix, cluster_config& c) {
    r.string(n, prefix, "scope", c.scope);
    read_dcs(r, n, prefix, c.dcs);
    if (c.dcs.enabled && c.dcs.scope.empty()) {
        c.dcs.scope = c.scope;
    }
    read_members(r, n, prefix, c.dcs.enabled, c.members);
    read_health(r, n, prefix, c.health);
}

// `clusters:`: several Patroni clusters, each with its name (the label),
// scope, members or DCS, and checks; the top-level health section gives the
// defaults a cluster's own overrides key by key.
void read_clusters(reader& r, const YAML::Node& root, config& cfg) {
    const YAML::Node seq = root["clusters"];
    for (const char* key : {"scope", "members", "dcs"}) {
        if (root[key]) {
            r.problem(root[key], key, "goes inside each entry of clusters: when there is a clusters list");
        }
    }
    if (!seq.IsSequence() || seq.size() == 0) {
        r.problem(seq, "clusters", "expected a non-empty list of clusters (name, scope, members or dcs, health)");
        return;
    }
    health_config defaults;
    read_health(r, root, "", defaults);
    std::set<std::string> names;
    std::set<std::string> scopes;      // namespace and scope: one DCS prefix each
    std::set<std::string> addresses;   // PostgreSQL host:port across clusters
    for (std::size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node n = seq[i];
        const auto path = "clusters[" + std::to_string(i) + "]";
        if (!r.check_map(n, path, {"name", "scope", "members", "dcs", "health"})) {
            continue;
        }
        cluster_config c;
        c.health = defaults;
        if (r.string(n, path, "name", c.name, true) && !valid_name(c.name)) {
            r.problem(n["name"], path + ".name", "expected letters, digits, '-', '_' or '.', at most 63");
        }
        if (!c.name.empty() && !names.insert(c.name).second) {
            r.problem(n["name"], path + ".name", "duplicate cluster name '" + c.name + "'");
        }
        if (!n["scope"]) {
            r.problem(n, path + ".scope", "is required: each cluster's Patroni scope (its DCS keys, its members' answers)");
        }
        read_cluster(r, n, path, c);
        if (c.scope.empty()) {
            r.problem(n["scope"] ? n["scope"] : n, path + ".scope", "must not be empty");
        } else if (!scopes.insert(c.dcs.ns + "\x1f" + c.scope).second) {
            r.problem(n["scope"], path + ".scope", "another cluster has scope '" + c.scope + "' already");
        }
        for (std::size_t k = 0; k < c.members.size(); ++k) {
            const auto& m = c.members[k];
            const auto at = m.host + ":" + std::to_string(m.port);
            if (!m.host.empty() && !addresses.insert(at).second) {
                const YAML::Node ms = n["members"];
                r.problem(ms && ms.IsSequence() && k < ms.size() ? ms[k] : n, path + ".members[" + std::to_string(k) + "]",
                          "PostgreSQL at " + at + " is a member of another cluster too");
            }
        }
        if (i == 0) {
            cfg.cluster_name = c.name;
            cfg.scope = c.scope;
            cfg.members = std::move(c.members);
            cfg.health = c.health;
            cfg.dcs = std::move(c.dcs);
        } else {
            cfg.more_clusters.push_back(std::move(c));
        }
    }
}

config read_root(reader& r, const YAML::Node& root, const std::string& source) {
    config cfg;
    cfg.source = source;
    if (!r.check_map(root, "", {"scope", "workers", "maxconn", "members", "dcs", "clusters", "listeners", "health",
                                "timeouts", "stats", "vip", "log", "control_socket"})) {
        return cfg;
    }
    if (const YAML::Node n = root["control_socket"]) {
        if (!n.IsScalar() || (!n.Scalar().empty() && n.Scalar().front() != '/') || n.Scalar().size() > 100) {
            r.problem(n, "control_socket", "expected an absolute path of at most 100 characters, or '' for none");
        } else {
            cfg.control_socket = n.Scalar();
        }
    }
    r.integer(root, "", "workers", cfg.workers, 0, 256);
    r.integer(root, "", "maxconn", cfg.maxconn, 0, 10'000'000);
    if (root["clusters"]) {
        read_clusters(r, root, cfg);
    } else {
        cluster_config c;
        read_cluster(r, root, "", c);
        cfg.scope = c.scope;
        cfg.members = std::move(c.members);
        cfg.health = c.health;
        cfg.dcs = std::move(c.dcs);
    }
    detail::read_listeners(r, root, cfg);
    read_timeouts(r, root, cfg.timeouts);
    read_stats(r, root, cfg.stats);
    read_vip(r, root, cfg.vip);
    if (const YAML::Node n = root["log"]; n && r.check_map(n, "log", {"level"})) {
        r.choice(n, "log", "level", cfg.log.level,
                 {{"debug", log_level::debug}, {"info", log_level::info}, {"warn", log_level::warn},
                  {"error", log_level::error}});
    }
    check_port_clashes(r, root, cfg);
    return cfg;
}

}  // namespace

config_error::config_error(std::vector<std::string> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

config load_text(std::string_view yaml, const std::string& source) {
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
        std::ostringstream line;
        line << source << ':' << e.mark.line + 1 << ':' << e.mark.column + 1 << ": " << e.msg;
        throw config_error({line.str()});
    }
    reader r(source);
    auto cfg = read_root(r, root, source);
    if (r.failed()) {
        throw config_error(r.problems());
    }
    return cfg;
}

config load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw config_error({path + ": cannot open the file"});
    }
    std::ostringstream text;
    text << in.rdbuf();
    return load_text(text.str(), path);
}

}  // namespace patroxy::conf
