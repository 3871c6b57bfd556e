#include "stats/status.hpp"

#include <algorithm>

namespace patroxy::stats {
namespace {

using nlohmann::json;

double seconds_since_epoch(wall_time t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

json time_or_null(wall_time t) {
    return t.time_since_epoch().count() == 0 ? json(nullptr) : json(seconds_since_epoch(t));
}

}  // namespace

const proxy::listener_totals& totals_of(const status& s, const std::string& listener) {
    static const proxy::listener_totals none;
    const auto it = s.listeners.find(listener);
    return it == s.listeners.end() ? none : it->second;
}

const proxy::member_totals& totals_of(const proxy::listener_totals& l, const std::string& member) {
    static const proxy::member_totals none;
    const auto it = l.members.find(member);
    return it == l.members.end() ? none : it->second;
}

status cluster_part(const status& s, std::size_t i) {
    status part;
    part.cfg = conf::cluster_view(*s.cfg, i);
    part.listeners = s.listeners;
    part.session_rate = s.session_rate;
    part.process = s.process;
    part.now = s.now;
    part.vip = s.vip;
    part.stats_connections = s.stats_connections;
    if (i < s.clusters.size()) {
        const auto& c = s.clusters[i];
        part.topology = c.topology;
        part.last_leader_change = c.last_leader_change;
        part.leader_changes = c.leader_changes;
        part.split_brain_events = c.split_brain_events;
        part.dcs = c.dcs;
        part.clusters = {c};
    } else {
        part.topology = s.topology;
    }
    return part;
}

std::string patroni_role_name(const status& s, std::size_t member) {
    const auto& m = s.topology->members[member];
    if (!m.report) {
        return m.up ? "unknown" : "unreachable";
    }
    switch (m.report->role) {
    case health::patroni_role::primary: return "Leader";
    case health::patroni_role::standby_leader: return "Standby Leader";
    case health::patroni_role::replica:
        // The lock can keep a leader that answers nothing (down, its report
        // dropped): no report, no sync list. Dereferencing it crashed the
        // process on a /status.json or /metrics scrape 2 s after the leader's
        // SIGKILL (bench/soak.sh, t=1200 s).
        if (s.topology->leader && s.topology->members[*s.topology->leader].report) {
            const auto& sync = s.topology->members[*s.topology->leader].report->sync_standbys;
            if (std::find(sync.begin(), sync.end(), m.name) != sync.end()) {
                return "Sync Standby";
            }
        }
        return "Replica";
    case health::patroni_role::unknown: return m.report->role_text;
    }
    return "unknown";
}

std::string role_on_listener(const status& s, const conf::listener_config& l, std::size_t member) {
    const auto& t = *s.topology;
    const auto& m = t.members[member];
    if (!l.allows(m.name)) {
        return "not on this listener";
    }
    if (t.fenced == m.id) {
        return "lost the lock while it hangs: sessions paused (health.handback_guard)";
    }
    if (!m.up) {
        return "down";
    }
    if (!m.report || !m.report->running()) {
        return m.report ? "PostgreSQL " + m.report->state : "no answer yet";
    }
    if (const auto* cls = t.class_of(l.name)) {
        std::size_t via = 0;
        const auto& to = cls->routed(&via);
        if (std::find(to.begin(), to.end(), member) != to.end()) {
            return via == 0 ? "routing" : "routing (fallback " + std::string(conf::to_string(cls->role_at(via))) + ")";
        }
        if (auto why = cls->why_excluded(m.id); !why.empty()) {
            return why;
        }
    }
    if (l.role == conf::listener_role::write || l.role == conf::listener_role::standby_leader) {
        if (t.split_brain() && std::find(t.leader_claimants.begin(), t.leader_claimants.end(), member) !=
                                   t.leader_claimants.end()) {
            return "split brain";
        }
        if (t.keeps(l.role, m.id)) {
            return t.writes_held ? "leader (new writes held)" : "routing";
        }
        if (t.keeps_write(m.id)) {
            return l.role == conf::listener_role::write ? "standby leader (a standby cluster: no writes)"
                                                        : "primary (not a standby cluster)";
        }
        return "standby (not the leader)";
    }
    if (m.report->claims_leadership()) {
        return "leader (reads go to replicas)";
    }
    if (t.class_of(l.name) == nullptr && t.keeps(l.role, m.id)) {
        return "routing";  // a snapshot without classes (none computed for this listener)
    }
    return "not in class '" + std::string(conf::to_string(l.role)) + "'";
}

std::string vip_state_name(const status& s) {
    if (!s.cfg->vip.enabled) {
        return "disabled";
    }
    if (!s.vip.running) {
        return "off";
    }
    return std::string(vip::to_string(s.vip.state));
}

bool can_route_writes(const status& s) {
    if (s.clusters.size() <= 1) {
        return s.topology->leader.has_value();
    }
    for (std::size_t i = 0; i < s.clusters.size(); ++i) {
        if (conf::needs_leader(*s.cfg, i) && !s.clusters[i].topology->leader) {
            return false;
        }
    }
    return true;
}

namespace {

json cluster_json(const status& s) {
    const auto& cfg = *s.cfg;
    const auto& t = *s.topology;
    json out;
    std::optional<std::string> fenced;
    if (t.fenced) {
        if (const auto at = t.position(*t.fenced)) {
            fenced = t.members[*at].name;
        }
    }
    out = {
        {"name", cfg.cluster_label(0)},
        {"scope", cfg.scope},
        {"leader", t.leader ? json(t.members[*t.leader].name) : json(nullptr)},
        {"timeline", t.timeline ? json(*t.timeline) : json(nullptr)},
        {"paused", t.paused},
        {"split_brain", t.split_brain()},
        {"topology_generation", t.generation},
        {"leader_changes_total", s.leader_changes},
        {"split_brain_events_total", s.split_brain_events},
        {"last_leader_change_at", time_or_null(s.last_leader_change.at)},
        {"last_leaderless_seconds", std::chrono::duration<double>(s.last_leader_change.leaderless).count()},
        {"leader_source", std::string(health::to_string(t.leader_source))},
        {"lock_holder", t.lock_holder ? json(*t.lock_holder) : json(nullptr)},
        {"writes_held", t.writes_held},
        {"handback_guard", fenced ? json(*fenced) : json(nullptr)},
    };
    return out;
}

json dcs_json(const status& s) {
    json out;
    if (s.dcs) {
        const auto& d = *s.dcs;
        const auto& w = d.watcher;
        json failover = nullptr;
        if (d.failover) {
            failover = {{"leader", d.failover->leader.empty() ? json(nullptr) : json(d.failover->leader)},
                        {"member", d.failover->member.empty() ? json(nullptr) : json(d.failover->member)},
                        {"scheduled_at", d.failover->scheduled_at ? time_or_null(*d.failover->scheduled_at) : json(nullptr)}};
        }
        out = {
            {"type", d.type},
            {"connected", w.connected},
            {"fresh", d.fresh},
            {"stale_after_seconds", std::chrono::duration<double>(d.stale_after).count()},
            {"endpoint", w.endpoint},
            {"revision", w.revision},
            {"last_event_at", time_or_null(w.last_event)},
            {"last_error", w.last_error},
            {"errors_total", w.errors},
            {"events_total", w.events},
            {"resyncs_total", w.resyncs},
            {"leader", d.leader ? json(*d.leader) : json(nullptr)},
            {"members", d.members},
            {"failover", failover},
            {"ttl_seconds", d.ttl ? json(d.ttl->count()) : json(nullptr)},
        };
    } else {
        out = nullptr;
    }
    return out;
}

json members_json(const status& s) {
    const auto& cfg = *s.cfg;
    const auto& t = *s.topology;
    json out = json::array();
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        json member = {
            {"name", m.name},
            {"cluster", cfg.cluster_label(0)},
            {"host", m.host},
            {"host_name", m.address_name.empty() ? json(nullptr) : json(m.address_name)},
            {"port", m.port},
            {"api_url", m.api_url.empty() ? json(nullptr) : json(m.api_url)},
            {"discovered", m.discovered},
            {"role", patroni_role_name(s, i)},
            {"state", m.report ? json(m.report->state) : json(nullptr)},
            {"check", {{"status", m.up ? "UP" : "DOWN"},
                       {"health", m.health},
                       {"rise", cfg.health.rise},
                       {"fall", cfg.health.fall},
                       {"last_ok", m.last_check.answered},
                       {"last_http_status", m.last_check.http_status},
                       {"last_duration_ms", m.last_check.duration.count()},
                       {"last_at", time_or_null(m.last_check.at)},
                       {"last_error", m.last_check.error}}},
            {"lag_bytes", m.lag_bytes ? json(*m.lag_bytes) : json(nullptr)},
            {"timeline", m.report && m.report->timeline ? json(*m.report->timeline) : json(nullptr)},
            {"tags", m.report ? json(m.report->tags) : json::object()},
            {"last_change_at", time_or_null(m.last_change)},
            {"downtime_seconds", std::chrono::duration<double>(m.downtime).count()},
        };
        member["listeners"] = json::object();
        for (const auto& l : cfg.listeners) {
            const auto& c = totals_of(totals_of(s, l.name), m.name);
            member["listeners"][l.name] = {
                {"role", role_on_listener(s, l, i)},
                {"sessions_current", c.current},
                {"sessions_max", c.peak},
                {"sessions_total", c.total},
                {"connect_errors_total", c.connect_errors},
                {"bytes_in_total", c.bytes_in},
                {"bytes_out_total", c.bytes_out},
            };
        }
        out.push_back(std::move(member));
    }
    return out;
}

}  // namespace

json to_json(const status& s) {
    const auto& cfg = *s.cfg;
    json out;
    out["patroxy"] = {
        {"version", s.process.version},
        {"started_at", time_or_null(s.process.started)},
        {"uptime_seconds", std::chrono::duration<double>(s.now - s.process.started).count()},
        {"workers", s.process.workers},
        {"pid", s.process.pid},
        {"config_file", s.process.config_file},
        {"config_generation", s.process.reload.generation},
        {"last_reload_at", time_or_null(s.process.reload.last_at)},
        {"last_reload", {{"result", s.process.reload.last_result},
                         {"errors", s.process.reload.last_errors},
                         {"restart_needed", s.process.reload.restart_needed}}},
        {"config_reloads_total", {{"ok", s.process.reload.ok_total}, {"failed", s.process.reload.failed_total}}},
        {"connections_current", s.process.connections},
        {"connections_limit", s.process.connection_limit},
        {"descriptor_limit", s.process.descriptor_limit},
        {"stats_connections", s.stats_connections},
        {"log_lines_dropped_total", s.process.log_dropped},
    };
    // The first cluster at the top (a single-cluster file's page as it was),
    // every cluster under "clusters", every member under "members".
    const auto n = std::max<std::size_t>(1, s.clusters.size());
    out["clusters"] = json::array();
    out["members"] = json::array();
    for (std::size_t i = 0; i < n; ++i) {
        const auto part = s.clusters.empty() ? s : cluster_part(s, i);
        auto c = cluster_json(part);
        c["dcs"] = dcs_json(part);
        if (i == 0) {
            out["cluster"] = cluster_json(part);
            out["dcs"] = c["dcs"];
        }
        out["clusters"].push_back(std::move(c));
        for (auto& m : members_json(part)) {
            out["members"].push_back(std::move(m));
        }
    }
    out["listeners"] = json::array();
    for (const auto& lc : cfg.listeners) {
        const auto& c = totals_of(s, lc.name);
        json closed = json::object();
        for (std::size_t r = 0; r < proxy::close_reason_count; ++r) {
            closed[std::string(proxy::to_string(static_cast<proxy::close_reason>(r)))] = c.closed[r];
        }
        const auto rate = s.session_rate.find(lc.name);
        out["listeners"].push_back({
            {"name", lc.name},
            {"cluster", cfg.cluster_label(cfg.cluster_of(lc))},
            {"role", std::string(conf::to_string(lc.role))},
            {"bind", lc.bind},
            {"port", lc.port},
            {"sessions_current", c.current},
            {"sessions_max", c.peak},
            {"sessions_limit", lc.maxconn},
            {"sessions_total", c.accepted},
            {"session_rate_per_second", rate == s.session_rate.end() ? 0.0 : rate->second},
            {"held_current", c.held},
            {"closed_total", closed},
            {"bytes_in_total", c.bytes_in},
            {"bytes_out_total", c.bytes_out},
        });
    }
    out["sessions"] = json::array();
    for (const auto& v : s.sessions) {
        out["sessions"].push_back({
            {"listener", v.listener},
            {"member", v.member.empty() ? json(nullptr) : json(v.member)},
            {"client", v.client},
            {"state", v.state},
            {"user", v.user.empty() ? json(nullptr) : json(v.user)},
            {"database", v.database.empty() ? json(nullptr) : json(v.database)},
            {"application_name", v.application_name},
            {"encrypted", v.encrypted},
            {"age_seconds", v.age_seconds},
            {"bytes_in", v.bytes_in},
            {"bytes_out", v.bytes_out},
        });
    }
    const auto& v = s.vip;
    json dropped = json::object();
    for (const auto& [reason, n] : v.dropped) {
        dropped[reason] = n;
    }
    out["vip"] = {
        {"state", vip_state_name(s)},
        {"configured", cfg.vip.enabled},
        {"address", cfg.vip.address.empty() ? json(nullptr) : json(v.address)},
        {"interface", cfg.vip.enabled ? json(v.interface) : json(nullptr)},
        {"reason", !cfg.vip.enabled ? "disabled in the configuration" : v.running ? v.unhealthy_reason : v.off_reason},
        {"virtual_router_id", cfg.vip.virtual_router_id},
        {"priority", v.priority},
        {"effective_priority", v.effective_priority},
        {"master", v.master.empty() ? json(nullptr) : json(v.master)},
        {"last_transition_at", time_or_null(v.last_transition)},
        {"transitions_total", v.transitions},
        {"adverts_sent_total", v.adverts_sent},
        {"adverts_received_total", v.adverts_received},
        {"adverts_dropped_total", dropped},
    };
    return out;
}

}  // namespace patroxy::stats
