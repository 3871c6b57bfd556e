// /metrics: a registry built from one status at scrape time, serialized by
// prometheus-cpp. The hot path never touches prometheus-cpp's atomics: the
// workers' own counters are summed into this registry per scrape.

#include "stats/status.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>

namespace patroxy::stats {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::Registry;

double secs(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::string render_metrics(const status& s) {
    const auto& cfg = *s.cfg;
    Registry r;
    auto gauge = [&r](const char* name, const char* help) -> prometheus::Family<prometheus::Gauge>& {
        return BuildGauge().Name(name).Help(help).Register(r);
    };
    auto counter = [&r](const char* name, const char* help) -> prometheus::Family<prometheus::Counter>& {
        return BuildCounter().Name(name).Help(help).Register(r);
    };

    gauge("patroxy_build_info", "patroxy version (always 1)").Add({{"version", s.process.version}}).Set(1);
    gauge("patroxy_start_time_seconds", "Start time of the process, seconds since the epoch")
        .Add({})
        .Set(std::chrono::duration<double>(s.process.started.time_since_epoch()).count());
    gauge("patroxy_workers", "Data-plane worker threads").Add({}).Set(static_cast<double>(s.process.workers));
    gauge("patroxy_connections", "Client connections open now, every listener").Add({}).Set(s.process.connections);
    gauge("patroxy_connections_limit", "Client connections at which accepting pauses")
        .Add({})
        .Set(s.process.connection_limit);
    counter("patroxy_log_lines_dropped_total", "Log lines dropped because the log writer fell behind")
        .Add({})
        .Increment(static_cast<double>(s.process.log_dropped));
    // Each cluster's families once; with several clusters every series has a
    // `cluster` label (a single-cluster file's series stay as they were).
    const bool several = s.clusters.size() > 1;
    auto& has_leader = gauge("patroxy_cluster_has_leader", "1 when writes can be routed to a leader");
    auto& cluster_timeline = gauge("patroxy_cluster_timeline", "The leader's timeline");
    auto& paused = gauge("patroxy_cluster_paused", "1 when Patroni is in maintenance mode");
    auto& leader_changes = counter("patroxy_leader_changes_total", "Times the routed leader changed");
    auto& split_brains = counter("patroxy_split_brain_events_total", "Times two or more members claimed leadership");
    auto& leader_source =
        gauge("patroxy_cluster_leader_source", "What decided the leader (1 for the current source: dcs, cluster, roles)");
    auto& writes_held = gauge("patroxy_cluster_writes_held", "1 while new writes wait for a switchover to finish");
    auto& up = gauge("patroxy_member_up", "1 when the member's Patroni checks pass (rise/fall)");
    auto& role = gauge("patroxy_member_role", "The member's Patroni role (1 for the current role)");
    auto& leader = gauge("patroxy_member_leader", "1 for the member the write listeners route to");
    auto& lag = gauge("patroxy_member_lag_bytes", "Replication lag behind the leader in bytes");
    auto& timeline = gauge("patroxy_member_timeline", "The member's timeline");
    auto& check_duration = gauge("patroxy_member_check_duration_seconds", "Duration of the last Patroni check");
    auto& downtime = counter("patroxy_member_downtime_seconds_total", "Time the member spent DOWN");
    const bool any_dcs = std::any_of(s.clusters.begin(), s.clusters.end(), [](const cluster_status& c) { return c.dcs.has_value(); });
    prometheus::Family<prometheus::Gauge>* dcs_connected = nullptr;
    prometheus::Family<prometheus::Gauge>* dcs_fresh = nullptr;
    prometheus::Family<prometheus::Gauge>* dcs_revision = nullptr;
    prometheus::Family<prometheus::Gauge>* dcs_last_event = nullptr;
    prometheus::Family<prometheus::Counter>* dcs_errors = nullptr;
    prometheus::Family<prometheus::Counter>* dcs_events = nullptr;
    prometheus::Family<prometheus::Counter>* dcs_resyncs = nullptr;
    prometheus::Family<prometheus::Gauge>* dcs_members = nullptr;
    if (any_dcs) {
        dcs_connected = &gauge("patroxy_dcs_connected", "1 when the last exchange with etcd worked");
        dcs_fresh = &gauge("patroxy_dcs_fresh", "1 while the DCS's view decides leadership (not stale)");
        dcs_revision = &gauge("patroxy_dcs_revision", "The etcd revision (v3) or index (v2) last seen");
        dcs_last_event = &gauge("patroxy_dcs_last_event_time_seconds", "When etcd last answered, seconds since the epoch");
        dcs_errors = &counter("patroxy_dcs_errors_total", "Failed exchanges with etcd");
        dcs_events = &counter("patroxy_dcs_events_total", "Watch events received");
        dcs_resyncs = &counter("patroxy_dcs_resyncs_total", "Full ranges that differed from the watched view");
        dcs_members = &gauge("patroxy_dcs_members", "Members with a key in the DCS");
    }
    for (std::size_t ci = 0; ci < std::max<std::size_t>(1, s.clusters.size()); ++ci) {
        const auto part = s.clusters.empty() ? s : cluster_part(s, ci);
        const auto& t = *part.topology;
        const auto& scope = part.cfg->scope;
        std::map<std::string, std::string> base;
        if (several) {
            base["cluster"] = part.cfg->cluster_label(0);
        }
        const auto with = [&](std::map<std::string, std::string> more) {
            more.insert(base.begin(), base.end());
            return more;
        };
        has_leader.Add(with({{"scope", scope}})).Set(t.leader ? 1 : 0);
        cluster_timeline.Add(with({{"scope", scope}})).Set(t.timeline ? *t.timeline : 0);
        paused.Add(with({{"scope", scope}})).Set(t.paused ? 1 : 0);
        leader_changes.Add(base).Increment(static_cast<double>(part.leader_changes));
        split_brains.Add(base).Increment(static_cast<double>(part.split_brain_events));
        leader_source.Add(with({{"scope", scope}, {"source", std::string(health::to_string(t.leader_source))}})).Set(1);
        writes_held.Add(with({{"scope", scope}})).Set(t.writes_held ? 1 : 0);
        if (part.dcs) {
            const auto& d = *part.dcs;
            dcs_connected->Add(with({{"endpoint", d.watcher.endpoint}})).Set(d.watcher.connected ? 1 : 0);
            dcs_fresh->Add(base).Set(d.fresh ? 1 : 0);
            dcs_revision->Add(base).Set(static_cast<double>(d.watcher.revision));
            dcs_last_event->Add(base).Set(std::chrono::duration<double>(d.watcher.last_event.time_since_epoch()).count());
            dcs_errors->Add(base).Increment(static_cast<double>(d.watcher.errors));
            dcs_events->Add(base).Increment(static_cast<double>(d.watcher.events));
            dcs_resyncs->Add(base).Increment(static_cast<double>(d.watcher.resyncs));
            dcs_members->Add(base).Set(static_cast<double>(d.members));
        }
        for (std::size_t i = 0; i < t.members.size(); ++i) {
            const auto& m = t.members[i];
            up.Add(with({{"member", m.name}})).Set(m.up ? 1 : 0);
            role.Add(with({{"member", m.name}, {"role", patroni_role_name(part, i)}})).Set(1);
            leader.Add(with({{"member", m.name}})).Set(t.leader == i ? 1 : 0);
            if (m.lag_bytes) {
                lag.Add(with({{"member", m.name}})).Set(static_cast<double>(*m.lag_bytes));
            }
            if (m.report && m.report->timeline) {
                timeline.Add(with({{"member", m.name}})).Set(*m.report->timeline);
            }
            check_duration.Add(with({{"member", m.name}})).Set(secs(m.last_check.duration));
            downtime.Add(with({{"member", m.name}})).Increment(secs(m.downtime));
        }
    }

    auto& sessions = gauge("patroxy_listener_sessions", "Sessions open now");
    auto& sessions_max = gauge("patroxy_listener_sessions_max", "Most sessions open at once");
    auto& sessions_limit = gauge("patroxy_listener_sessions_limit", "maxconn");
    auto& held = gauge("patroxy_listener_held_sessions", "Clients waiting for an eligible member now");
    auto& rate = gauge("patroxy_listener_session_rate", "New sessions per second over the last 10 s");
    auto& accepted = counter("patroxy_listener_sessions_total", "Sessions accepted");
    auto& closed = counter("patroxy_listener_closed_sessions_total", "Sessions ended, by reason");
    auto& bytes_in = counter("patroxy_listener_bytes_in_total", "Bytes from clients to members");
    auto& bytes_out = counter("patroxy_listener_bytes_out_total", "Bytes from members to clients");
    auto& backend_sessions = gauge("patroxy_backend_sessions", "Sessions open now, by member");
    auto& backend_max = gauge("patroxy_backend_sessions_max", "Most sessions open at once, by member");
    auto& backend_total = counter("patroxy_backend_sessions_total", "Sessions routed, by member");
    auto& backend_errors = counter("patroxy_backend_connect_errors_total", "Failed connects, by member");
    auto& backend_in = counter("patroxy_backend_bytes_in_total", "Bytes from clients to the member");
    auto& backend_out = counter("patroxy_backend_bytes_out_total", "Bytes from the member to clients");
    for (const auto& lc : cfg.listeners) {
        const auto& c = totals_of(s, lc.name);
        std::map<std::string, std::string> labels{{"listener", lc.name},
                                                  {"role", std::string(conf::to_string(lc.role))}};
        if (several) {
            labels["cluster"] = cfg.cluster_label(cfg.cluster_of(lc));
        }
        sessions.Add(labels).Set(static_cast<double>(c.current));
        sessions_max.Add(labels).Set(static_cast<double>(c.peak));
        sessions_limit.Add(labels).Set(lc.maxconn);
        held.Add(labels).Set(static_cast<double>(c.held));
        const auto r = s.session_rate.find(lc.name);
        rate.Add(labels).Set(r == s.session_rate.end() ? 0.0 : r->second);
        accepted.Add(labels).Increment(static_cast<double>(c.accepted));
        bytes_in.Add(labels).Increment(static_cast<double>(c.bytes_in));
        bytes_out.Add(labels).Increment(static_cast<double>(c.bytes_out));
        for (std::size_t reason = 0; reason < proxy::close_reason_count; ++reason) {
            auto with_reason = labels;
            with_reason["reason"] = std::string(proxy::to_string(static_cast<proxy::close_reason>(reason)));
            closed.Add(with_reason).Increment(static_cast<double>(c.closed[reason]));
        }
        // Every member routed to under this listener, including ones a reload removed since.
        for (const auto& [member, mc] : c.members) {
            auto with_member = labels;
            with_member["member"] = member;
            backend_sessions.Add(with_member).Set(static_cast<double>(mc.current));
            backend_max.Add(with_member).Set(static_cast<double>(mc.peak));
            backend_total.Add(with_member).Increment(static_cast<double>(mc.total));
            backend_errors.Add(with_member).Increment(static_cast<double>(mc.connect_errors));
            backend_in.Add(with_member).Increment(static_cast<double>(mc.bytes_in));
            backend_out.Add(with_member).Increment(static_cast<double>(mc.bytes_out));
        }
    }
    const auto& reload = s.process.reload;
    gauge("patroxy_config_generation", "Generation of the configuration running now").Add({})
        .Set(static_cast<double>(reload.generation));
    auto& reloads = counter("patroxy_config_reloads_total", "Configuration reloads, by result");
    reloads.Add({{"result", "ok"}}).Increment(static_cast<double>(reload.ok_total));
    reloads.Add({{"result", "failed"}}).Increment(static_cast<double>(reload.failed_total));
    const auto& v = s.vip;
    gauge("patroxy_vip_master", "1 while this host holds the virtual IP").Add({})
        .Set(v.running && v.state == vip::vrrp_state::master ? 1 : 0);
    auto& vip_state = gauge("patroxy_vip_state", "VRRP state (1 for the current one)");
    for (const auto* name : {"disabled", "off", "initialize", "backup", "master", "fault"}) {
        vip_state.Add({{"state", name}}).Set(vip_state_name(s) == name ? 1 : 0);
    }
    if (cfg.vip.enabled) {
        auto& priority = gauge("patroxy_vip_priority", "VRRP priority: configured, and effective after health tracking");
        priority.Add({{"kind", "configured"}}).Set(v.priority);
        priority.Add({{"kind", "effective"}}).Set(v.effective_priority);
        counter("patroxy_vip_transitions_total", "VRRP state changes").Add({}).Increment(static_cast<double>(v.transitions));
        counter("patroxy_vip_adverts_sent_total", "VRRP adverts sent").Add({}).Increment(static_cast<double>(v.adverts_sent));
        counter("patroxy_vip_adverts_received_total", "Valid VRRP adverts received").Add({})
            .Increment(static_cast<double>(v.adverts_received));
        auto& dropped = counter("patroxy_vip_adverts_dropped_total", "VRRP packets dropped, by reason");
        for (const auto& [reason, n] : v.dropped) {
            dropped.Add({{"reason", reason}}).Increment(static_cast<double>(n));
        }
    }
    return prometheus::TextSerializer().Serialize(r.Collect());
}

}  // namespace patroxy::stats
