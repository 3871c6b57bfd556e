#include "conf/loader.hpp"

#include "conf/duration.hpp"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

namespace patroxy::conf {
namespace {

std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) {
        out += l;
        out += '\n';
    }
    return out;
}

bool is_ipv4(const std::string& s) {
    in_addr a{};
    return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ip(const std::string& s) {
    in6_addr a6{};
    return is_ipv4(s) || inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

bool is_wildcard(const std::string& s) { return s == "0.0.0.0" || s == "::"; }

// Walks the YAML tree, fills a config, and collects problems with their marks.
class reader {
public:
    explicit reader(std::string source) : source_(std::move(source)) {}

    void problem(const YAML::Node& at, const std::string& path, const std::string& msg) {
        std::ostringstream line;
        line << source_;
        const auto mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
        if (mark.line >= 0) {
            // yaml-cpp's marks are 0-based; editors and compilers count from 1.
            line << ':' << mark.line + 1 << ':' << mark.column + 1;
        }
        line << ": " << (path.empty() ? "(top level)" : path) << ": " << msg;
        problems_.push_back(line.str());
    }

    bool failed() const { return !problems_.empty(); }
    const std::vector<std::string>& problems() const { return problems_; }

    // A map is required; reports any key not in `allowed`.
    bool check_map(const YAML::Node& n, const std::string& path, std::initializer_list<std::string_view> allowed) {
        if (!n.IsMap()) {
            problem(n, path, "expected a mapping of keys to values");
            return false;
        }
        for (const auto& kv : n) {
            const auto key = kv.first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string list;
                for (auto a : allowed) {
                    list += (list.empty() ? "" : ", ") + std::string(a);
                }
                problem(kv.first, join(path, key), "unknown key (expected one of: " + list + ")");
            }
        }
        return true;
    }

    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    // Integer in [lo, hi].
    template <class Int>
    void integer(const YAML::Node& map, const std::string& path, const char* key, Int& out, long long lo, long long hi) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        const auto where = join(path, key);
        long long value = 0;
        const std::string s = n.IsScalar() ? n.Scalar() : std::string{};
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
        if (!n.IsScalar() || s.empty() || ec != std::errc{} || end != s.data() + s.size() || value < lo || value > hi) {
            problem(n, where, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                  ", got '" + describe(n) + "'");
            return;
        }
        out = static_cast<Int>(value);
    }

    void boolean(const YAML::Node& map, const std::string& path, const char* key, bool& out) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        bool value = false;
        if (!n.IsScalar() || !YAML::convert<bool>::decode(n, value)) {
            problem(n, join(path, key), "expected true or false, got '" + describe(n) + "'");
            return;
        }
        out = value;
    }

    // String; `required` reports a missing key at the map.
    bool string(const YAML::Node& map, const std::string& path, const char* key, std::string& out, bool required = false) {
        const YAML::Node n = map[key];
        if (!n) {
            if (required) {
                problem(map, join(path, key), "is required");
            }
            return false;
        }
        if (!n.IsScalar() || n.Scalar().empty()) {
            problem(n, join(path, key), "expected a non-empty string");
            return false;
        }
        out = n.Scalar();
        return true;
    }

    void duration(const YAML::Node& map, const std::string& path, const char* key, milliseconds& out, milliseconds lo,
                  milliseconds hi) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        const auto value = n.IsScalar() ? parse_duration(n.Scalar()) : std::nullopt;
        if (!value || *value < lo || *value > hi) {
            problem(n, join(path, key), "expected a duration from " + show(lo) + " to " + show(hi) +
                                            " (units ms, s, m, h), got '" + describe(n) + "'");
            return;
        }
        out = *value;
    }

    void address(const YAML::Node& map, const std::string& path, const char* key, std::string& out, bool v4_only,
                 bool required = false) {
        std::string value;
        if (!string(map, path, key, value, required)) {
            return;
        }
        if (v4_only ? !is_ipv4(value) : !is_ip(value)) {
            problem(map[key], join(path, key),
                    std::string("expected an ") + (v4_only ? "IPv4" : "IPv4 or IPv6") + " address, got '" + value + "'");
            return;
        }
        out = value;
    }

    template <class Enum>
    void choice(const YAML::Node& map, const std::string& path, const char* key, Enum& out,
                std::initializer_list<std::pair<std::string_view, Enum>> options) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        std::string list;
        for (const auto& [name, value] : options) {
            if (n.IsScalar() && n.Scalar() == name) {
                out = value;
                return;
            }
            list += (list.empty() ? "'" : ", '") + std::string(name) + "'";
        }
        problem(n, join(path, key), "expected one of " + list + ", got '" + describe(n) + "'");
    }

    std::optional<basic_auth> auth(const YAML::Node& map, const std::string& path, const char* key) {
        const YAML::Node n = map[key];
        if (!n) {
            return std::nullopt;
        }
        const auto where = join(path, key);
        if (!check_map(n, where, {"username", "password"})) {
            return std::nullopt;
        }
        basic_auth a;
        string(n, where, "username", a.username, true);
        string(n, where, "password", a.password, true);
        return a;
    }

    static std::string describe(const YAML::Node& n) {
        if (n.IsScalar()) {
            return n.Scalar();
        }
        if (n.IsSequence()) {
            return "a list";
        }
        if (n.IsMap()) {
            return "a mapping";
        }
        return "nothing";
    }

    static std::string show(milliseconds d) {
        const auto ms = d.count();
        if (ms != 0 && ms % 3'600'000 == 0) {
            return std::to_string(ms / 3'600'000) + "h";
        }
        if (ms != 0 && ms % 60'000 == 0) {
            return std::to_string(ms / 60'000) + "m";
        }
        if (ms % 1000 == 0) {
            return std::to_string(ms / 1000) + "s";
        }
        return std::to_string(ms) + "ms";
    }

private:
    std::string source_;
    std::vector<std::string> problems_;
};

// "http://10.0.0.1:8008" or "http://10.0.0.1:8008/" (path ignored: patroxy asks /patroni).
std::optional<api_endpoint> parse_api_url(const std::string& url, std::string& why) {
    constexpr std::string_view scheme = "http://";
    if (url.rfind(scheme, 0) != 0) {
        why = "only http:// URLs are supported, got '" + url + "'";
        return std::nullopt;
    }
    std::string rest = url.substr(scheme.size());
    rest = rest.substr(0, rest.find('/'));
    api_endpoint ep;
    ep.url = url;
    std::string port_text;
    if (!rest.empty() && rest.front() == '[') {  // [v6]:port
        const auto close = rest.find(']');
        if (close == std::string::npos) {
            why = "unterminated IPv6 address in '" + url + "'";
            return std::nullopt;
        }
        ep.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size() && rest[close + 1] == ':') {
            port_text = rest.substr(close + 2);
        }
    } else {
        const auto colon = rest.find(':');
        ep.host = rest.substr(0, colon);
        if (colon != std::string::npos) {
            port_text = rest.substr(colon + 1);
        }
    }
    if (!is_ip(ep.host)) {
        why = "expected an IP address in the URL, got '" + ep.host + "' (names are not resolved)";
        return std::nullopt;
    }
    if (!port_text.empty()) {
        unsigned port = 0;
        const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
            why = "bad port '" + port_text + "' in '" + url + "'";
            return std::nullopt;
        }
        ep.port = static_cast<std::uint16_t>(port);
    }
    return ep;
}

bool valid_name(const std::string& s) {
    return !s.empty() && s.size() <= 63 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    });
}

void read_members(reader& r, const YAML::Node& root, config& cfg) {
    const YAML::Node seq = root["members"];
    if (!seq || !seq.IsSequence() || seq.size() == 0) {
        r.problem(seq ? seq : root, "members", "expected a non-empty list of members (name, host, port, api)");
        return;
    }
    std::set<std::string> names, pg_addresses, api_addresses;
    for (std::size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node n = seq[i];
        const auto path = "members[" + std::to_string(i) + "]";
        if (!r.check_map(n, path, {"name", "host", "port", "api", "api_auth"})) {
            continue;
        }
        member_config m;
        if (r.string(n, path, "name", m.name, true) && !valid_name(m.name)) {
            r.problem(n["name"], path + ".name", "expected letters, digits, '-', '_' or '.', at most 63");
        }
        r.address(n, path, "host", m.host, false, true);
        r.integer(n, path, "port", m.port, 1, 65535);
        std::string url;
        if (r.string(n, path, "api", url, true)) {
            std::string why;
            if (auto ep = parse_api_url(url, why)) {
                m.api = *ep;
            } else {
                r.problem(n["api"], path + ".api", why);
            }
        }
        m.api_auth = r.auth(n, path, "api_auth");
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
        cfg.members.push_back(std::move(m));
    }
}

void read_listeners(reader& r, const YAML::Node& root, config& cfg) {
    const YAML::Node seq = root["listeners"];
    if (!seq) {
        cfg.listeners = config::default_listeners(cfg.members.size());
        return;
    }
    if (!seq.IsSequence() || seq.size() == 0) {
        r.problem(seq, "listeners", "expected a non-empty list of listeners (name, role, port)");
        return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < seq.size(); ++i) {
        const YAML::Node n = seq[i];
        const auto path = "listeners[" + std::to_string(i) + "]";
        if (!r.check_map(n, path, {"name", "role", "bind", "port", "maxconn", "balance", "members"})) {
            continue;
        }
        listener_config l;
        r.string(n, path, "name", l.name, true);
        if (!n["role"]) {
            r.problem(n, path + ".role", "is required ('write' or 'read')");
        }
        r.choice(n, path, "role", l.role, {{"write", listener_role::write}, {"read", listener_role::read}});
        r.address(n, path, "bind", l.bind, false);
        if (!n["port"]) {
            r.problem(n, path + ".port", "is required");
        }
        r.integer(n, path, "port", l.port, 1, 65535);
        r.integer(n, path, "maxconn", l.maxconn, 1, 1'000'000);
        r.choice(n, path, "balance", l.balance, {{"roundrobin", balance_mode::roundrobin}});
        if (const YAML::Node ms = n["members"]) {
            if (!ms.IsSequence()) {
                r.problem(ms, path + ".members", "expected a list of member names");
            } else {
                for (std::size_t j = 0; j < ms.size(); ++j) {
                    const auto name = ms[j].IsScalar() ? ms[j].Scalar() : std::string{};
                    const auto it = std::find_if(cfg.members.begin(), cfg.members.end(),
                                                 [&](const member_config& m) { return m.name == name; });
                    if (it == cfg.members.end()) {
                        r.problem(ms[j], path + ".members[" + std::to_string(j) + "]", "no member named '" + name + "'");
                    } else {
                        l.members.push_back(static_cast<std::size_t>(it - cfg.members.begin()));
                    }
                }
                if (ms.size() == 0) {
                    r.problem(ms, path + ".members", "a listener needs at least one member to route to");
                }
            }
        } else {
            for (std::size_t m = 0; m < cfg.members.size(); ++m) {
                l.members.push_back(m);
            }
        }
        if (!l.name.empty() && !names.insert(l.name).second) {
            r.problem(n["name"], path + ".name", "duplicate listener name '" + l.name + "'");
        }
        cfg.listeners.push_back(std::move(l));
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

void read_health(reader& r, const YAML::Node& root, health_config& h) {
    const YAML::Node n = root["health"];
    if (!n || !r.check_map(n, "health", {"interval", "fast_interval", "timeout", "fall", "rise", "max_lag",
                                         "read_fallback_to_leader"})) {
        return;
    }
    r.duration(n, "health", "interval", h.interval, milliseconds{100}, milliseconds{3'600'000});
    r.duration(n, "health", "fast_interval", h.fast_interval, milliseconds{100}, milliseconds{3'600'000});
    r.duration(n, "health", "timeout", h.timeout, milliseconds{100}, milliseconds{60'000});
    r.integer(n, "health", "fall", h.fall, 1, 100);
    r.integer(n, "health", "rise", h.rise, 1, 100);
    if (const YAML::Node lag = n["max_lag"]) {
        const auto bytes = lag.IsScalar() ? parse_size(lag.Scalar()) : std::nullopt;
        if (!bytes) {
            r.problem(lag, "health.max_lag", "expected a size in bytes such as 1048576, 512kB or 16MB, got '" +
                                                 reader::describe(lag) + "'");
        }
        h.max_lag_bytes = bytes;
    }
    r.boolean(n, "health", "read_fallback_to_leader", h.read_fallback_to_leader);
    if (h.fast_interval > h.interval) {
        r.problem(n["fast_interval"], "health.fast_interval", "must not be longer than health.interval (" +
                                                                  reader::show(h.interval) + ")");
    }
}

void read_timeouts(reader& r, const YAML::Node& root, timeouts_config& t) {
    const YAML::Node n = root["timeouts"];
    if (!n || !r.check_map(n, "timeouts", {"connect", "client_idle", "server_idle", "retries", "wait_for_backend",
                                           "startup", "drain"})) {
        return;
    }
    const milliseconds day{24LL * 3'600'000};
    r.duration(n, "timeouts", "connect", t.connect, milliseconds{100}, milliseconds{120'000});
    r.duration(n, "timeouts", "client_idle", t.client_idle, milliseconds{1000}, day);
    r.duration(n, "timeouts", "server_idle", t.server_idle, milliseconds{1000}, day);
    r.integer(n, "timeouts", "retries", t.retries, 0, 10);
    r.duration(n, "timeouts", "wait_for_backend", t.wait_for_backend, milliseconds{0}, milliseconds{600'000});
    r.duration(n, "timeouts", "startup", t.startup, milliseconds{100}, milliseconds{600'000});
    r.duration(n, "timeouts", "drain", t.drain, milliseconds{0}, milliseconds{3'600'000});
}

void read_stats(reader& r, const YAML::Node& root, stats_config& s) {
    const YAML::Node n = root["stats"];
    if (!n || !r.check_map(n, "stats", {"enabled", "bind", "port", "auth"})) {
        return;
    }
    r.boolean(n, "stats", "enabled", s.enabled);
    r.address(n, "stats", "bind", s.bind, false);
    r.integer(n, "stats", "port", s.port, 1, 65535);
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

config read_root(reader& r, const YAML::Node& root, const std::string& source) {
    config cfg;
    cfg.source = source;
    if (!r.check_map(root, "", {"scope", "workers", "members", "listeners", "health", "timeouts", "stats", "vip", "log"})) {
        return cfg;
    }
    r.string(root, "", "scope", cfg.scope);
    r.integer(root, "", "workers", cfg.workers, 0, 256);
    read_members(r, root, cfg);
    read_listeners(r, root, cfg);
    read_health(r, root, cfg.health);
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
