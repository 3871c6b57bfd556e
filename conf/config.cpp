#include "conf/config.hpp"

#include <algorithm>
#include <sstream>

namespace patroxy::conf {

std::vector<listener_config> config::default_listeners() {
    listener_config write;
    write.name = "master";
    write.role = listener_role::write;
    write.port = 5000;
    listener_config read;
    read.name = "replicas";
    read.role = listener_role::read;
    read.port = 5001;
    return {write, read};
}

bool listener_config::allows(std::string_view name) const {
    return members.empty() || std::find(members.begin(), members.end(), name) != members.end();
}

const member_config* config::member(std::string_view name) const {
    const auto it = std::find_if(members.begin(), members.end(), [&](const member_config& m) { return m.name == name; });
    return it == members.end() ? nullptr : &*it;
}

const listener_config* config::listener(std::string_view name) const {
    const auto it =
        std::find_if(listeners.begin(), listeners.end(), [&](const listener_config& l) { return l.name == name; });
    return it == listeners.end() ? nullptr : &*it;
}

cluster_config config::cluster(std::size_t i) const {
    if (i > 0) {
        return more_clusters.at(i - 1);
    }
    return {cluster_name, scope, members, health, dcs};
}

std::string config::cluster_label(std::size_t i) const {
    if (i == 0) {
        return cluster_name.empty() ? scope : cluster_name;
    }
    const auto& c = more_clusters.at(i - 1);
    return c.name.empty() ? c.scope : c.name;
}

std::optional<std::size_t> config::cluster_index(std::string_view label) const {
    if (label.empty()) {
        return 0;
    }
    for (std::size_t i = 0; i < cluster_count(); ++i) {
        if (cluster_label(i) == label) {
            return i;
        }
    }
    return std::nullopt;
}

bool needs_leader(const config& cfg, std::size_t i) {
    const auto writes_to = [&](std::size_t c) {
        return std::any_of(cfg.listeners.begin(), cfg.listeners.end(),
                           [&](const listener_config& l) { return cfg.cluster_of(l) == c && !routes_replicas(l.role); });
    };
    if (writes_to(i)) {
        return true;
    }
    for (std::size_t c = 0; c < cfg.cluster_count(); ++c) {
        if (writes_to(c)) {
            return false;  // another cluster's write port is what this host is for
        }
    }
    return true;
}

config_ptr cluster_view(const config& cfg, std::size_t i) {
    auto v = std::make_shared<config>(cfg);
    const auto c = cfg.cluster(i);
    v->cluster_name = cfg.cluster_label(i);
    v->scope = c.scope;
    v->members = c.members;
    v->health = c.health;
    v->dcs = c.dcs;
    v->more_clusters.clear();
    std::erase_if(v->listeners, [&](const listener_config& l) { return cfg.cluster_of(l) != i; });
    for (auto& l : v->listeners) {
        l.cluster.clear();
    }
    return v;
}

std::vector<std::string> restart_needed(const config& running, const config& next) {
    std::vector<std::string> out;
    const auto differs = [&](const char* key, const auto& a, const auto& b) {
        if (a != b) {
            std::ostringstream line;
            line << std::boolalpha << key << ": " << a << " -> " << b;
            out.push_back(line.str());
        }
    };
    differs("workers", running.workers, next.workers);
    differs("stats.enabled", running.stats.enabled, next.stats.enabled);
    differs("stats.bind", running.stats.bind, next.stats.bind);
    differs("stats.port", running.stats.port, next.stats.port);
    differs("control_socket", running.control_socket, next.control_socket);
    return out;
}

long descriptor_budget::sessions_within(long limit) const {
    const long fit = (limit - reserved) / per_session;
    return fit < sessions ? (fit > 0 ? fit : 0) : sessions;
}

descriptor_budget descriptors_for(const config& cfg, std::size_t workers) {
    descriptor_budget b;
    long listeners_sum = 0;
    for (const auto& l : cfg.listeners) {
        listeners_sum += l.maxconn + refusal_slots;
    }
    b.sessions = cfg.maxconn > 0 ? std::min<long>(cfg.maxconn, listeners_sum) : listeners_sum;
    const auto n_workers = static_cast<long>(workers);
    const auto n_listeners = static_cast<long>(cfg.listeners.size());
    long n_members = 0;
    for (std::size_t i = 0; i < cfg.cluster_count(); ++i) {
        n_members += static_cast<long>(cfg.members_of(i).size());
    }
    b.reserved = 3                                   // stdin, stdout, stderr
                 + n_workers * (2 + n_listeners)     // epoll + eventfd, a listening socket each
                 + 2 * n_members                     // a health check each, and one reconnecting
                 + (cfg.stats.enabled ? cfg.stats.maxconn + 2 : 0)
                 + (cfg.vip.enabled ? 8 : 0)         // raw sockets, netlink, ARP, the peer probe
                 + 64;                               // control thread, resolver, log, slack
    return b;
}

std::string_view to_string(listener_role r) {
    switch (r) {
    case listener_role::write: return "write";
    case listener_role::read: return "read";
    case listener_role::sync: return "sync";
    case listener_role::async: return "async";
    case listener_role::any: return "any";
    case listener_role::standby_leader: return "standby_leader";
    }
    return "write";
}

std::string_view to_string(balance_mode b) {
    switch (b) {
    case balance_mode::roundrobin: return "roundrobin";
    case balance_mode::leastconn: return "leastconn";
    case balance_mode::first: return "first";
    }
    return "roundrobin";
}

std::string_view to_string(log_level l) {
    switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    }
    return "info";
}

}  // namespace patroxy::conf
