// The stats page: self-contained HTML (no scripts, fonts or CDNs) that
// refreshes itself, built from the same JSON as /status.json so the two never
// disagree.

#include "stats/status.hpp"

#include <cstdio>
#include <sstream>

namespace patroxy::stats {
namespace {

using nlohmann::json;

std::string escape(const std::string& in) {
    std::string out;
    out.reserve(in.size());
    for (const char c : in) {
        switch (c) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

std::string text(const json& v) {
    if (v.is_null()) {
        return "-";
    }
    if (v.is_string()) {
        return escape(v.get<std::string>());
    }
    if (v.is_boolean()) {
        return v.get<bool>() ? "yes" : "no";
    }
    if (v.is_number_float()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", v.get<double>());
        return buf;
    }
    return escape(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::string bytes(std::uint64_t n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

std::string ago(const json& at, double now) {
    if (!at.is_number()) {
        return "never";
    }
    const double d = now - at.get<double>();
    char buf[32];
    if (d < 120) {
        std::snprintf(buf, sizeof buf, "%.0fs ago", d);
    } else if (d < 7200) {
        std::snprintf(buf, sizeof buf, "%.0fm ago", d / 60);
    } else {
        std::snprintf(buf, sizeof buf, "%.1fh ago", d / 3600);
    }
    return buf;
}

const char* style = R"(
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1rem;color:#1b1f24;background:#f6f8fa}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;overflow-x:auto}
table{border-collapse:collapse;width:100%;min-width:640px}th,td{padding:.3rem .5rem;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
th{font-weight:600;background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37;font-weight:600}.down{color:#cf222e;font-weight:600}.warn{color:#9a6700}.muted{color:#57606a}
.pill{display:inline-block;padding:0 .4rem;border-radius:1rem;background:#ddf4ff}.leader{background:#dafbe1}
.kv{display:flex;flex-wrap:wrap;gap:.4rem 1.6rem}.kv div span{color:#57606a;margin-right:.3rem}
@media (max-width:700px){body{margin:.4rem}table{font-size:12px}}
)";

}  // namespace

std::string render_html(const status& s) {
    const json j = to_json(s);
    const double now = std::chrono::duration<double>(s.now.time_since_epoch()).count();
    std::ostringstream o;
    std::string heading = text(j["cluster"]["scope"]);
    if (j["clusters"].size() > 1) {
        heading.clear();
        for (const auto& c : j["clusters"]) {
            heading += (heading.empty() ? "" : ", ") + text(c["name"]);
        }
    }
    o << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      << "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      << "<meta http-equiv=\"refresh\" content=\"5\"><title>patroxy - " << heading << "</title><style>"
      << style << "</style></head><body>";
    o << "<h1>patroxy &middot; " << heading << "</h1>";

    // One section per cluster; the first keeps the ids a single-cluster page has.
    const bool several = j["clusters"].size() > 1;
    for (std::size_t ci = 0; ci < j["clusters"].size(); ++ci) {
        const auto& c = j["clusters"][ci];
        const std::string title = several ? " &middot; " + text(c["name"]) : std::string{};
        const std::string id = ci == 0 ? std::string{} : "-" + text(c["name"]);
        o << "<h2>Cluster" << title << "</h2><div class=\"card kv\" id=\"cluster" << id << "\">"
          << "<div><span>leader</span><b id=\"leader" << id << "\">" << text(c["leader"]) << "</b></div>"
          << "<div><span>timeline</span>" << text(c["timeline"]) << "</div>"
          << "<div><span>paused</span>" << text(c["paused"]) << "</div>"
          << "<div><span>split brain</span>" << (c["split_brain"].get<bool>() ? "<b class=\"down\">YES</b>" : "no")
          << "</div><div><span>last leader change</span>" << ago(c["last_leader_change_at"], now) << "</div>"
          << "<div><span>without a leader then</span>" << text(c["last_leaderless_seconds"]) << " s</div>"
          << "<div><span>leader changes</span>" << text(c["leader_changes_total"]) << "</div>"
          << "<div><span>decided by</span><b id=\"leader-source" << id << "\">" << text(c["leader_source"]) << "</b></div>"
          << "<div><span>lock holder</span>" << text(c["lock_holder"]) << "</div>"
          << (c["writes_held"].get<bool>() ? "<div><b class=\"warn\">new writes held: a switchover is under way</b></div>" : "")
          << "</div>";
        if (const auto& d = c["dcs"]; !d.is_null()) {
            o << "<h2>DCS" << title << "</h2><div class=\"card kv\" id=\"dcs" << id << "\">"
              << "<div><span>" << text(d["type"]) << "</span><b class=\"" << (d["fresh"].get<bool>() ? "up" : "down") << "\">"
              << (d["fresh"].get<bool>() ? "current" : "STALE: leadership from the members' answers") << "</b></div>"
              << "<div><span>endpoint</span>" << text(d["endpoint"]) << (d["connected"].get<bool>() ? "" : " <span class=\"down\">not connected</span>")
              << "</div><div><span>revision</span>" << text(d["revision"]) << "</div>"
              << "<div><span>last event</span>" << ago(d["last_event_at"], now) << "</div>"
              << "<div><span>leader key</span>" << text(d["leader"]) << "</div>"
              << "<div><span>member keys</span>" << text(d["members"]) << "</div>"
              << "<div><span>failover key</span>"
              << (d["failover"].is_null() ? std::string("none") : text(d["failover"]["leader"]) + " &rarr; " + text(d["failover"]["member"]))
              << "</div><div><span>errors</span>" << text(d["errors_total"])
              << (d["last_error"].get<std::string>().empty() ? "" : " <span class=\"muted\">" + text(d["last_error"]) + "</span>")
              << "</div></div>";
        }

        o << "<h2>Members" << title << "</h2><div class=\"card\"><table id=\"members" << id << "\"><tr><th>member</th><th>address</th><th>role</th>"
          << "<th>state</th><th>check</th><th>last check</th><th>lag</th><th>TL</th><th>tags</th>";
        for (const auto& l : j["listeners"]) {
            if (l["cluster"] == c["name"]) {
                o << "<th>" << text(l["name"]) << " (" << text(l["role"]) << ")</th><th>sessions cur/max/total</th>";
            }
        }
        o << "<th>bytes in/out</th><th>connect errors</th><th>changed</th><th>downtime</th></tr>";
        for (const auto& m : j["members"]) {
            if (m["cluster"] != c["name"]) {
                continue;
            }
            const auto& ck = m["check"];
            const bool up = ck["status"] == "UP";
            const bool is_leader = m["role"] == "Leader" || m["role"] == "Standby Leader";
            o << "<tr data-member=\"" << text(m["name"]) << "\"><td><b>" << text(m["name"]) << "</b></td><td>"
              << text(m["host"]) << ":" << text(m["port"]) << " <span class=\"muted\">" << text(m["api_url"])
              << "</span></td><td><span class=\"pill" << (is_leader ? " leader" : "")
              << "\">" << text(m["role"]) << "</span></td><td>" << text(m["state"]) << "</td><td class=\""
              << (up ? "up" : "down") << "\">" << text(ck["status"]) << " <span class=\"muted\">" << text(ck["health"])
              << "/" << ck["rise"].get<int>() + ck["fall"].get<int>() - 1 << "</span></td><td>"
              << (ck["last_ok"].get<bool>() ? "ok" : "<span class=\"down\">" + text(ck["last_error"]) + "</span>")
              << " <span class=\"muted\">HTTP " << text(ck["last_http_status"]) << ", " << text(ck["last_duration_ms"])
              << " ms</span></td><td class=\"n\">"
              << (m["lag_bytes"].is_null() ? "-" : bytes(m["lag_bytes"].get<std::uint64_t>())) << "</td><td class=\"n\">"
              << text(m["timeline"]) << "</td><td>";
            for (const auto& [k, v] : m["tags"].items()) {
                o << escape(k) << "=" << text(v) << " ";
            }
            o << "</td>";
            std::uint64_t in = 0;
            std::uint64_t out = 0;
            std::uint64_t errors = 0;
            for (const auto& l : j["listeners"]) {
                if (l["cluster"] != c["name"]) {
                    continue;
                }
                const auto& ml = m["listeners"][l["name"].get<std::string>()];
                const bool routing = ml["role"].get<std::string>().rfind("routing", 0) == 0;
                o << "<td class=\"" << (routing ? "up" : "muted") << "\">" << text(ml["role"]) << "</td><td class=\"n\">"
                  << text(ml["sessions_current"]) << " / " << text(ml["sessions_max"]) << " / " << text(ml["sessions_total"])
                  << "</td>";
                in += ml["bytes_in_total"].get<std::uint64_t>();
                out += ml["bytes_out_total"].get<std::uint64_t>();
                errors += ml["connect_errors_total"].get<std::uint64_t>();
            }
            o << "<td class=\"n\">" << bytes(in) << " / " << bytes(out) << "</td><td class=\"n\">" << errors
              << "</td><td>" << ago(m["last_change_at"], now) << "</td><td class=\"n\">" << text(m["downtime_seconds"])
              << " s</td></tr>";
        }
        o << "</table></div>";

    }

    o << "<h2>Listeners</h2><div class=\"card\"><table id=\"listeners\"><tr><th>listener</th><th>role</th><th>bind</th>"
      << "<th>sessions cur/max/limit</th><th>total</th><th>rate/s</th><th>held</th><th>refused</th><th>bytes in/out</th></tr>";
    for (const auto& l : j["listeners"]) {
        std::string refused;
        for (const auto* reason : {"no_backend", "connect_failed", "maxconn", "protocol_error", "startup_timeout"}) {
            const auto n = l["closed_total"][reason].get<std::uint64_t>();
            if (n > 0) {
                refused += std::string(reason) + "=" + std::to_string(n) + " ";
            }
        }
        o << "<tr><td><b>" << text(l["name"]) << "</b>" << (several ? " <span class=\"muted\">" + text(l["cluster"]) + "</span>" : "")
          << "</td><td>" << text(l["role"]) << "</td><td>" << text(l["bind"])
          << ":" << text(l["port"]) << "</td><td class=\"n\">" << text(l["sessions_current"]) << " / "
          << text(l["sessions_max"]) << " / " << text(l["sessions_limit"]) << "</td><td class=\"n\">"
          << text(l["sessions_total"]) << "</td><td class=\"n\">" << text(l["session_rate_per_second"])
          << "</td><td class=\"n\">" << text(l["held_current"]) << "</td><td>" << (refused.empty() ? "-" : refused)
          << "</td><td class=\"n\">" << bytes(l["bytes_in_total"].get<std::uint64_t>()) << " / "
          << bytes(l["bytes_out_total"].get<std::uint64_t>()) << "</td></tr>";
    }
    o << "</table></div>";

    const auto& sessions = j["sessions"];
    std::uint64_t open_now = 0;
    for (const auto& l : j["listeners"]) {
        open_now += l["sessions_current"].get<std::uint64_t>();
    }
    o << "<h2>Sessions</h2><div class=\"card\"><table id=\"sessions\"><tr><th>listener</th><th>member</th>"
      << "<th>client</th><th>user</th><th>database</th><th>application</th><th>state</th><th>age</th>"
      << "<th>bytes in/out</th></tr>";
    std::size_t shown = 0;
    for (const auto& s : sessions) {
        if (shown == session_page_limit) {
            break;
        }
        ++shown;
        const bool tls = s["encrypted"].get<bool>();
        o << "<tr><td>" << text(s["listener"]) << "</td><td>" << text(s["member"]) << "</td><td>" << text(s["client"])
          << "</td><td>" << (tls ? "(TLS)" : text(s["user"])) << "</td><td>" << (tls ? "(TLS)" : text(s["database"]))
          << "</td><td>" << text(s["application_name"]) << "</td><td>" << text(s["state"])
          << "</td><td class=\"n\">" << static_cast<long long>(s["age_seconds"].get<double>()) << " s</td><td class=\"n\">"
          << bytes(s["bytes_in"].get<std::uint64_t>()) << " / " << bytes(s["bytes_out"].get<std::uint64_t>())
          << "</td></tr>";
    }
    o << "</table><p class=\"muted\">" << shown << " of " << open_now
      << " open sessions, longest-running first</p></div>";

    const auto& v = j["vip"];
    o << "<h2>Virtual IP</h2><div class=\"card kv\" id=\"vip\"><div><span>state</span><b>" << text(v["state"])
      << "</b></div><div><span>address</span>" << text(v["address"]) << "</div>";
    if (v["configured"].get<bool>()) {
        o << "<div><span>interface</span>" << text(v["interface"]) << "</div><div><span>vrid</span>"
          << text(v["virtual_router_id"]) << "</div><div><span>priority</span>" << text(v["effective_priority"]) << " / "
          << text(v["priority"]) << "</div><div><span>master heard</span>" << text(v["master"])
          << "</div><div><span>last change</span>" << ago(v["last_transition_at"], now)
          << "</div><div><span>adverts sent/received</span>" << text(v["adverts_sent_total"]) << " / "
          << text(v["adverts_received_total"]) << "</div>";
    }
    o << "<div class=\"muted\">" << text(v["reason"]) << "</div></div>";

    const auto& p = j["patroxy"];
    o << "<h2>patroxy</h2><div class=\"card kv\"><div><span>version</span>" << text(p["version"])
      << "</div><div><span>uptime</span>" << text(p["uptime_seconds"]) << " s</div><div><span>workers</span>"
      << text(p["workers"]) << "</div><div><span>config</span>" << text(p["config_file"])
      << "</div><div><span>config generation</span>" << text(p["config_generation"])
      << "</div><div><span>last reload</span>" << ago(p["last_reload_at"], now) << " "
      << (p["last_reload"]["result"] == "failed" ? "<b class=\"down\">failed</b>" : text(p["last_reload"]["result"]))
      << "</div><div><span>connections</span>" << text(p["connections_current"]) << " / "
      << text(p["connections_limit"]) << "</div></div>";
    // A reload that failed says where, and what waits for a restart.
    const auto& last = p["last_reload"];
    if (!last["errors"].empty() || !last["restart_needed"].empty()) {
        o << "<div class=\"card\" id=\"reload\">";
        for (const auto& e : last["errors"]) {
            o << "<div class=\"down\">" << text(e) << "</div>";
        }
        for (const auto& r : last["restart_needed"]) {
            o << "<div class=\"muted\">needs a restart: " << text(r) << "</div>";
        }
        o << "</div>";
    }
    o
      << "<p class=\"muted\">Refreshes every 5 s &middot; <a href=\"status.json\">status.json</a> &middot; "
      << "<a href=\"metrics\">metrics</a> &middot; <a href=\"health\">health</a></p></body></html>";
    return o.str();
}

}  // namespace patroxy::stats
