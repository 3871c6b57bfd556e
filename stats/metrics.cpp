// /metrics: a registry built from one status at scrape time, serialized by
// prometheus-cpp. The hot path never touches prometheus-cpp's atomics: the
// workers' own counters are summed into this registry per scrape.

#include "stats/status.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace patroxy::stats {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::Registry;

double secs(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::string render_metrics(const status& s) {
    const auto& cfg = *s.cfg;
    const auto& t = *s.topology;
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
    gauge("patroxy_cluster_has_leader", "1 when writes can be routed to a leader").Add({{"scope", cfg.scope}})
        .Set(t.leader ? 1 : 0);
    gauge("patroxy_cluster_timeline", "The leader's timeline").Add({{"scope", cfg.scope}})
        .Set(t.timeline ? *t.timeline : 0);
    gauge("patroxy_cluster_paused", "1 when Patroni is in maintenance mode").Add({{"scope", cfg.scope}})
        .Set(t.paused ? 1 : 0);
    counter("patroxy_leader_changes_total", "Times the routed leader changed").Add({}).Increment(
        static_cast<double>(s.leader_changes));
    counter("patroxy_split_brain_events_total", "Times two or more members claimed leadership").Add({}).Increment(
        static_cast<double>(s.split_brain_events));

    auto& up = gauge("patroxy_member_up", "1 when the member's Patroni checks pass (rise/fall)");
    auto& role = gauge("patroxy_member_role", "The member's Patroni role (1 for the current role)");
    auto& leader = gauge("patroxy_member_leader", "1 for the member the write listeners route to");
    auto& lag = gauge("patroxy_member_lag_bytes", "Replication lag behind the leader in bytes");
    auto& timeline = gauge("patroxy_member_timeline", "The member's timeline");
    auto& check_duration = gauge("patroxy_member_check_duration_seconds", "Duration of the last Patroni check");
    auto& downtime = counter("patroxy_member_downtime_seconds_total", "Time the member spent DOWN");
    for (std::size_t i = 0; i < t.members.size(); ++i) {
        const auto& m = t.members[i];
        up.Add({{"member", m.name}}).Set(m.up ? 1 : 0);
        role.Add({{"member", m.name}, {"role", patroni_role_name(s, i)}}).Set(1);
        leader.Add({{"member", m.name}}).Set(t.leader == i ? 1 : 0);
        if (m.lag_bytes) {
            lag.Add({{"member", m.name}}).Set(static_cast<double>(*m.lag_bytes));
        }
        if (m.report && m.report->timeline) {
            timeline.Add({{"member", m.name}}).Set(*m.report->timeline);
        }
        check_duration.Add({{"member", m.name}}).Set(secs(m.last_check.duration));
        downtime.Add({{"member", m.name}}).Increment(secs(m.downtime));
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
    for (std::size_t l = 0; l < cfg.listeners.size(); ++l) {
        const auto& lc = cfg.listeners[l];
        const auto& c = s.listeners[l];
        const std::map<std::string, std::string> labels{{"listener", lc.name},
                                                        {"role", std::string(conf::to_string(lc.role))}};
        sessions.Add(labels).Set(static_cast<double>(c.current));
        sessions_max.Add(labels).Set(static_cast<double>(c.peak));
        sessions_limit.Add(labels).Set(lc.maxconn);
        held.Add(labels).Set(static_cast<double>(c.held));
        rate.Add(labels).Set(l < s.session_rate.size() ? s.session_rate[l] : 0.0);
        accepted.Add(labels).Increment(static_cast<double>(c.accepted));
        bytes_in.Add(labels).Increment(static_cast<double>(c.bytes_in));
        bytes_out.Add(labels).Increment(static_cast<double>(c.bytes_out));
        for (std::size_t reason = 0; reason < proxy::close_reason_count; ++reason) {
            auto with_reason = labels;
            with_reason["reason"] = std::string(proxy::to_string(static_cast<proxy::close_reason>(reason)));
            closed.Add(with_reason).Increment(static_cast<double>(c.closed[reason]));
        }
        for (std::size_t m = 0; m < c.members.size(); ++m) {
            auto with_member = labels;
            with_member["member"] = cfg.members[m].name;
            const auto& mc = c.members[m];
            backend_sessions.Add(with_member).Set(static_cast<double>(mc.current));
            backend_max.Add(with_member).Set(static_cast<double>(mc.peak));
            backend_total.Add(with_member).Increment(static_cast<double>(mc.total));
            backend_errors.Add(with_member).Increment(static_cast<double>(mc.connect_errors));
            backend_in.Add(with_member).Increment(static_cast<double>(mc.bytes_in));
            backend_out.Add(with_member).Increment(static_cast<double>(mc.bytes_out));
        }
    }
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
