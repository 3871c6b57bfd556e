// The `listeners:` list: each client-facing port, the class of members it
// routes to, the filters that narrow it, its fallbacks and its balancing.
#include "conf/duration.hpp"
#include "conf/reader.hpp"

#include <algorithm>
#include <set>

namespace patroxy::conf::detail {
namespace {

constexpr std::pair<std::string_view, listener_role> roles[] = {
    {"write", listener_role::write}, {"read", listener_role::read},   {"sync", listener_role::sync},
    {"async", listener_role::async}, {"any", listener_role::any},     {"standby_leader", listener_role::standby_leader}};

void read_tags(reader& r, const YAML::Node& map, const std::string& path, const char* key, tag_selector& out) {
    const YAML::Node n = map[key];
    if (!n) {
        return;
    }
    if (!n.IsMap() || n.size() == 0) {
        r.problem(n, reader::join(path, key), "expected a mapping of tag names to values, such as {dc: a}");
        return;
    }
    for (const auto& kv : n) {
        if (!kv.second.IsScalar()) {
            r.problem(kv.second, reader::join(reader::join(path, key), kv.first.Scalar()), "expected a tag value");
            continue;
        }
        out.emplace_back(kv.first.Scalar(), kv.second.Scalar());
    }
}

void read_lag(reader& r, const YAML::Node& map, const std::string& path, lag_limit& out) {
    const YAML::Node n = map["max_lag"];
    const auto where = reader::join(path, "max_lag");
    if (!n || !r.check_map(n, where, {"bytes", "time", "return_below"})) {
        return;
    }
    if (const YAML::Node b = n["bytes"]) {
        out.bytes = b.IsScalar() ? parse_size(b.Scalar()) : std::nullopt;
        if (!out.bytes) {
            r.problem(b, where + ".bytes", "expected a size in bytes such as 1048576, 512kB or 16MB, got '" +
                                               reader::describe(b) + "'");
        }
    }
    if (n["time"]) {
        milliseconds t{0};
        r.duration(n, where, "time", t, milliseconds{1}, milliseconds{86'400'000});
        out.time = t;
    }
    if (const YAML::Node f = n["return_below"]) {
        double v = -1;
        if (!f.IsScalar() || !YAML::convert<double>::decode(f, v) || v <= 0 || v > 1) {
            r.problem(f, where + ".return_below", "expected a fraction of the limit above 0 and at most 1, got '" +
                                                      reader::describe(f) + "'");
        } else {
            out.return_below = v;
        }
    }
    if (!out.any()) {
        r.problem(n, where, "needs bytes, time or both");
    }
}

void read_fallback(reader& r, const YAML::Node& map, const std::string& path, listener_config& l) {
    const YAML::Node n = map["fallback"];
    if (!n) {
        return;
    }
    const auto where = reader::join(path, "fallback");
    std::vector<YAML::Node> items;
    if (n.IsScalar()) {
        items.push_back(n);
    } else if (n.IsSequence()) {
        for (const auto& item : n) {
            items.push_back(item);
        }
    } else {
        r.problem(n, where, "expected a class or a list of classes (read, sync, async, any, write, standby_leader)");
        return;
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto at = where + "[" + std::to_string(i) + "]";
        auto role = listener_role::write;
        bool known = false;
        for (const auto& [name, value] : roles) {
            if (items[i].IsScalar() && items[i].Scalar() == name) {
                role = value;
                known = true;
            }
        }
        if (!known) {
            r.problem(items[i], at, "expected one of 'read', 'sync', 'async', 'any', 'write', 'standby_leader', got '" +
                                        reader::describe(items[i]) + "'");
        } else if (role == l.role ||
                   std::find(l.fallback.begin(), l.fallback.end(), role) != l.fallback.end()) {
            r.problem(items[i], at, "'" + std::string(to_string(role)) + "' is already tried before this");
        } else if (l.role == listener_role::write || l.role == listener_role::standby_leader) {
            r.problem(items[i], at, "a " + std::string(to_string(l.role)) + " listener has no fallback: its sessions need the leader");
        } else {
            l.fallback.push_back(role);
        }
    }
}

}  // namespace

void read_listeners(reader& r, const YAML::Node& root, config& cfg) {
    const YAML::Node seq = root["listeners"];
    if (!seq) {
        cfg.listeners = config::default_listeners();
    } else if (!seq.IsSequence() || seq.size() == 0) {
        r.problem(seq, "listeners", "expected a non-empty list of listeners (name, role, port)");
        return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; seq && i < seq.size(); ++i) {
        const YAML::Node n = seq[i];
        const auto path = "listeners[" + std::to_string(i) + "]";
        if (!r.check_map(n, path, {"name", "role", "bind", "port", "maxconn", "balance", "members", "fallback",
                                   "max_lag", "allow_archive_recovery", "tags", "prefer", "cluster"})) {
            continue;
        }
        listener_config l;
        r.string(n, path, "name", l.name, true);
        std::size_t cluster = 0;
        if (r.string(n, path, "cluster", l.cluster)) {
            if (const auto i = cfg.cluster_index(l.cluster)) {
                cluster = *i;
                l.cluster = cfg.cluster_label(*i);
            } else {
                std::string known;
                for (std::size_t i = 0; i < cfg.cluster_count(); ++i) {
                    known += (i ? ", " : "") + cfg.cluster_label(i);
                }
                r.problem(n["cluster"], path + ".cluster", "no cluster named '" + l.cluster + "' (there are: " + known + ")");
            }
        } else if (cfg.cluster_count() > 1) {
            r.problem(n, path + ".cluster", "is required when there are several clusters");
        }
        const auto& health = cfg.health_of(cluster);
        if (!n["role"]) {
            r.problem(n, path + ".role", "is required (write, read, sync, async, any or standby_leader)");
        }
        r.choice(n, path, "role", l.role, std::span<const std::pair<std::string_view, listener_role>>(roles));
        r.address(n, path, "bind", l.bind, false);
        if (!n["port"]) {
            r.problem(n, path + ".port", "is required");
        }
        r.integer(n, path, "port", l.port, 1, 65535);
        r.integer(n, path, "maxconn", l.maxconn, 1, 1'000'000);
        r.choice(n, path, "balance", l.balance,
                 {{"roundrobin", balance_mode::roundrobin},
                  {"leastconn", balance_mode::leastconn},
                  {"first", balance_mode::first}});
        if (const YAML::Node ms = n["members"]) {
            if (!ms.IsSequence()) {
                r.problem(ms, path + ".members", "expected a list of member names");
            } else {
                for (std::size_t j = 0; j < ms.size(); ++j) {
                    const auto name = ms[j].IsScalar() ? ms[j].Scalar() : std::string{};
                    const auto& known = cfg.members_of(cluster);
                    if (std::none_of(known.begin(), known.end(), [&](const member_config& m) { return m.name == name; })) {
                        r.problem(ms[j], path + ".members[" + std::to_string(j) + "]",
                                  "no member named '" + name + "'" +
                                      (cfg.cluster_count() > 1 ? " in cluster '" + cfg.cluster_label(cluster) + "'" : ""));
                    } else {
                        l.members.push_back(name);
                    }
                }
                if (ms.size() == 0) {
                    r.problem(ms, path + ".members", "a listener needs at least one member to route to");
                }
            }
        }
        read_fallback(r, n, path, l);
        read_lag(r, n, path, l.max_lag);
        r.boolean(n, path, "allow_archive_recovery", l.allow_archive_recovery);
        read_tags(r, n, path, "tags", l.tags);
        read_tags(r, n, path, "prefer", l.prefer);
        if (l.max_lag.time && *l.max_lag.time < health.interval) {
            r.problem(n["max_lag"]["time"], path + ".max_lag.time",
                      "must be at least health.interval (" + reader::show(health.interval) +
                          "): replay delay is measured at checks, and a shorter limit would flap");
        }
        if (!routes_replicas(l.role)) {
            for (const char* key : {"max_lag", "allow_archive_recovery", "tags", "prefer"}) {
                if (n[key] && !(std::string_view(key) == "allow_archive_recovery" && !l.allow_archive_recovery)) {
                    r.problem(n[key], reader::join(path, key),
                              "applies to replicas; a " + std::string(to_string(l.role)) + " listener routes to the leader");
                }
            }
        }
        if (!l.name.empty() && !names.insert(l.name).second) {
            r.problem(n["name"], path + ".name", "duplicate listener name '" + l.name + "'");
        }
        cfg.listeners.push_back(std::move(l));
    }
    inherit_health_keys(cfg);
}

}  // namespace patroxy::conf::detail

namespace patroxy::conf {

void inherit_health_keys(config& cfg) {
    for (auto& l : cfg.listeners) {
        const auto& health = cfg.health_of(cfg.cluster_of(l));
        if (routes_replicas(l.role) && !l.max_lag.any() && health.max_lag_bytes) {
            l.max_lag.bytes = health.max_lag_bytes;
        }
        if (l.role == listener_role::read && l.fallback.empty() && health.read_fallback_to_leader) {
            // The leader, primary or (a standby cluster's) standby leader, as before classes.
            l.fallback = {listener_role::write, listener_role::standby_leader};
        }
    }
}

}  // namespace patroxy::conf
