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

bool allowed(const conf::listener_config& l, std::size_t member) {
    return std::find(l.members.begin(), l.members.end(), member) != l.members.end();
}

}  // namespace

std::string patroni_role_name(const status& s, std::size_t member) {
    const auto& m = s.topology->members[member];
    if (!m.report) {
        return m.up ? "unknown" : "unreachable";
    }
    switch (m.report->role) {
    case health::patroni_role::primary: return "Leader";
    case health::patroni_role::standby_leader: return "Standby Leader";
    case health::patroni_role::replica:
        if (s.topology->leader) {
            const auto& leader = s.topology->members[*s.topology->leader];
            const auto& sync = leader.report->sync_standbys;
            if (std::find(sync.begin(), sync.end(), m.name) != sync.end()) {
                return "Sync Standby";
            }
        }
        return "Replica";
    case health::patroni_role::unknown: return m.report->role_text;
    }
    return "unknown";
}

std::string role_on_listener(const status& s, std::size_t listener, std::size_t member) {
    const auto& l = s.cfg->listeners[listener];
    const auto& t = *s.topology;
    const auto& m = t.members[member];
    if (!allowed(l, member)) {
        return "not on this listener";
    }
    if (!m.up) {
        return "down";
    }
    if (!m.report || !m.report->running()) {
        return m.report ? "PostgreSQL " + m.report->state : "no answer yet";
    }
    if (l.role == conf::listener_role::write) {
        if (t.keeps_write(member)) {
            return "routing";
        }
        if (t.split_brain() && std::find(t.leader_claimants.begin(), t.leader_claimants.end(), member) !=
                                   t.leader_claimants.end()) {
            return "split brain";
        }
        return "standby (not the leader)";
    }
    if (t.is_readable(member)) {
        return "routing";
    }
    if (m.report->claims_leadership()) {
        return s.cfg->health.read_fallback_to_leader && t.readable.empty() ? "routing (fallback)" : "leader (reads go to replicas)";
    }
    if (m.report->noloadbalance) {
        return "tagged noloadbalance";
    }
    if (s.cfg->health.max_lag_bytes && m.lag_bytes && *m.lag_bytes > *s.cfg->health.max_lag_bytes) {
        return "lagging";
    }
    return "not eligible";
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
    return s.topology->leader.has_value();
}

json to_json(const status& s) {
    const auto& cfg = *s.cfg;
    const auto& t = *s.topology;
    json out;
    out["patroxy"] = {
        {"version", s.process.version},
        {"started_at", time_or_null(s.process.started)},
        {"uptime_seconds", std::chrono::duration<double>(s.now - s.process.started).count()},
        {"workers", s.process.workers},
        {"config_file", s.process.config_file},
        {"last_reload_at", time_or_null(s.process.last_reload)},
    };
    out["cluster"] = {
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
    };
    out["members"] = json::array();
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        const auto& mc = cfg.members[i];
        json member = {
            {"name", m.name},
            {"host", mc.host},
            {"port", mc.port},
            {"api_url", mc.api.url},
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
        for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
            const auto& c = s.listeners[l].members[i];
            member["listeners"][cfg.listeners[l].name] = {
                {"role", role_on_listener(s, l, i)},
                {"sessions_current", c.current},
                {"sessions_max", c.peak},
                {"sessions_total", c.total},
                {"connect_errors_total", c.connect_errors},
                {"bytes_in_total", c.bytes_in},
                {"bytes_out_total", c.bytes_out},
            };
        }
        out["members"].push_back(std::move(member));
    }
    out["listeners"] = json::array();
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        const auto& lc = cfg.listeners[l];
        const auto& c = s.listeners[l];
        json closed = json::object();
        for (std::size_t r = 0; r < proxy::close_reason_count; ++r) {
            closed[std::string(proxy::to_string(static_cast<proxy::close_reason>(r)))] = c.closed[r];
        }
        out["listeners"].push_back({
            {"name", lc.name},
            {"role", std::string(conf::to_string(lc.role))},
            {"bind", lc.bind},
            {"port", lc.port},
            {"sessions_current", c.current},
            {"sessions_max", c.peak},
            {"sessions_limit", lc.maxconn},
            {"sessions_total", c.accepted},
            {"session_rate_per_second", l < s.session_rate.size() ? s.session_rate[l] : 0.0},
            {"held_current", c.held},
            {"closed_total", closed},
            {"bytes_in_total", c.bytes_in},
            {"bytes_out_total", c.bytes_out},
        });
    }
    out["sessions"] = json::array();
    for (const auto& v : s.sessions) {
        out["sessions"].push_back({
            {"listener", cfg.listeners[v.listener].name},
            {"member", v.member ? json(cfg.members[*v.member].name) : json(nullptr)},
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
