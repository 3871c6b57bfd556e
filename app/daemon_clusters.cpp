// The daemon's clusters: one health monitor per Patroni cluster of the
// configuration, kept by cluster label across reloads, each handing out
// member ids of its own and publishing its topology to the server under its
// label; and what they tell together (systemd's readiness and status line,
// the VIP's health).
#include "app/daemon.hpp"

#include <algorithm>

namespace patroxy::app {

std::string daemon::handover_name(std::size_t cluster, const std::string& label, const std::string& member) {
    return cluster == 0 ? member : label + "/" + member;
}

daemon::cluster_watch daemon::watch_cluster(const conf::config& cfg, std::size_t i) {
    cluster_watch w;
    w.label = std::make_shared<std::string>(cfg.cluster_label(i));
    // A million ids per cluster label, handed out once each: ids stay apart
    // across clusters, and a cluster removed and added back keeps its own.
    const auto base = id_bases_.emplace(*w.label, static_cast<health::member_id>(id_bases_.size() << 20) + 1).first->second;
    w.monitor = std::make_unique<health::monitor>(
        control_, conf::cluster_view(cfg, i),
        [this, label = w.label](health::topology_ptr t) {
            if (server_ready_) {
                server_.publish(*label, std::move(t));
            }
        },
        base, cfg.cluster_count() > 1 ? *w.label : std::string{});
    return w;
}

std::vector<daemon::cluster_watch> daemon::watch_clusters() {
    std::vector<cluster_watch> out;
    for (std::size_t i = 0; i < cfg_->cluster_count(); ++i) {
        out.push_back(watch_cluster(*cfg_, i));
    }
    return out;
}

proxy::topologies daemon::latest_topologies() const {
    proxy::topologies out;
    for (const auto& c : clusters_) {
        out[*c.label] = c.monitor->latest();
    }
    return out;
}

void daemon::stop_monitors() {
    for (auto& c : clusters_) {
        c.monitor->stop();
    }
}

nlohmann::json daemon::last_answers() const {
    nlohmann::json out = nlohmann::json::object();
    for (std::size_t i = 0; i < clusters_.size(); ++i) {
        for (const auto& [name, body] : clusters_[i].monitor->last_answers()) {
            out[handover_name(i, *clusters_[i].label, name)] = body;
        }
    }
    return out;
}

health::topology_ptr daemon::topology() const {
    const std::lock_guard lock(clusters_mutex_);
    return clusters_.front().monitor->latest();
}

health::topology_ptr daemon::topology(std::string_view label) const {
    const std::lock_guard lock(clusters_mutex_);
    for (const auto& c : clusters_) {
        if (*c.label == label) {
            return c.monitor->latest();
        }
    }
    return nullptr;
}

bool daemon::first_round_in() const {
    return std::all_of(clusters_.begin(), clusters_.end(), [](const cluster_watch& c) {
        const auto t = c.monitor->latest();
        if (t->leader) {
            return true;  // a leader is routed (from our checks or the previous process's answers)
        }
        return !t->members.empty() && std::all_of(t->members.begin(), t->members.end(), [](const auto& m) {
            return m.last_check.at != health::wall_time{} || m.report.has_value();
        });
    });
}

std::string daemon::status_line() const {
    std::string line;
    for (const auto& c : clusters_) {
        const auto t = c.monitor->latest();
        const auto up = std::count_if(t->members.begin(), t->members.end(), [](const auto& m) { return m.up; });
        line += clusters_.size() > 1 ? *c.label + ": " : std::string{};
        line += t->leader ? "leader " + t->members[*t->leader].name : std::string("no leader routed");
        line += ", " + std::to_string(up) + "/" + std::to_string(t->members.size()) + " members up, ";
    }
    line += std::to_string(server_.connections()) + " connections";
    if (cfg_->vip.enabled) {
        const auto v = vip_.status();
        line += ", VIP " + (v.running ? std::string(vip::to_string(v.state)) : "off (" + v.off_reason + ")");
    }
    return line;
}

std::string daemon::unhealthy_reason() {
    // Every cluster a write (or standby_leader) port serves needs its leader
    // (with none, every cluster): as /health says.
    std::vector<const cluster_watch*> leaderless;
    bool none_answers = true;
    for (std::size_t i = 0; i < clusters_.size(); ++i) {
        const auto t = clusters_[i].monitor->latest();
        if ((clusters_.size() == 1 || conf::needs_leader(*cfg_, i)) && !t->leader) {
            leaderless.push_back(&clusters_[i]);
            none_answers = none_answers && std::none_of(t->members.begin(), t->members.end(), [](const auto& m) { return m.up; });
        }
    }
    const auto now = std::chrono::steady_clock::now();
    if (leaderless.empty()) {
        leaderless_since_.reset();
        return {};
    }
    if (!leaderless_since_) {
        leaderless_since_ = now;
    }
    const auto for_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - *leaderless_since_);
    if (for_ms < cfg_->vip.unhealthy_after) {
        return {};
    }
    std::string which;
    if (clusters_.size() > 1) {
        for (const auto* c : leaderless) {
            which += (which.empty() ? " (cluster " : ", ") + *c->label;
        }
        which += ")";
    }
    return std::string(none_answers ? "no Patroni API answers" : "no leader known") + which + " for " +
           std::to_string(for_ms.count() / 1000) + "s";
}

}  // namespace patroxy::app
