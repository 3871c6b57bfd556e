// `patroxy status` and `patroxy sessions` (app/cli.hpp): the renderer on
// documents, and the whole command against the real daemon in process
// (stats port with basic auth, fake Patroni APIs, stand-in members): with a
// leader, without one, with wrong credentials, with nothing listening.

#include "app/cli.hpp"

#include "support/proxy_harness.hpp"

#include <catch2/catch.hpp>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

json two_members(bool leader) {
    return json::parse(std::string(R"J({
      "patroxy": {"version": "0.1.0", "pid": 42, "uptime_seconds": 3725, "connections_current": 1,
                  "connections_limit": 20000, "config_generation": 2, "last_reload": {"result": "ok"}},
      "cluster": {"scope": "demo", "leader": )J") + (leader ? "\"pg0\"" : "null") + R"J(, "timeline": 3,
                  "leader_source": "dcs", "paused": false, "split_brain": false, "writes_held": false},
      "members": [
        {"name": "pg0", "host": "10.0.0.10", "port": 5432, "role": "Leader", "state": "running", "timeline": 3,
         "lag_bytes": null, "check": {"status": "UP", "health": 4, "rise": 2, "fall": 3, "last_error": ""},
         "listeners": {"master": {"role": "routing", "sessions_current": 1}, "replicas": {"role": "standby (not a replica)", "sessions_current": 0}}},
        {"name": "pg1", "host": "10.0.0.11", "port": 5432, "role": "Replica", "state": "streaming", "timeline": 3,
         "lag_bytes": 3145728, "check": {"status": "DOWN", "health": 0, "rise": 2, "fall": 3, "last_error": "connect: refused"},
         "listeners": {"master": {"role": "standby (not the leader)", "sessions_current": 0}, "replicas": {"role": "down", "sessions_current": 0}}}
      ],
      "listeners": [
        {"name": "master", "role": "write", "bind": "0.0.0.0", "port": 5000, "sessions_current": 1, "sessions_max": 7,
         "sessions_limit": 10000, "held_current": 0, "session_rate_per_second": 2.5, "sessions_total": 99,
         "bytes_in_total": 2048, "bytes_out_total": 10},
        {"name": "replicas", "role": "read", "bind": "0.0.0.0", "port": 5001, "sessions_current": 0, "sessions_max": 0,
         "sessions_limit": 10000, "held_current": 0, "session_rate_per_second": 0.0, "sessions_total": 0,
         "bytes_in_total": 0, "bytes_out_total": 0}
      ],
      "sessions": [{"listener": "master", "member": "pg0", "client": "10.1.1.1:40000", "state": "active",
                    "user": "app", "database": "shop", "application_name": "evil\u001b[2Jname", "encrypted": false,
                    "age_seconds": 75, "bytes_in": 100, "bytes_out": 2000}],
      "vip": {"state": "master", "configured": true, "address": "10.0.0.100", "interface": "eth0", "reason": "",
              "virtual_router_id": 51, "priority": 101, "effective_priority": 101, "master": null}
    })J");
}

}  // namespace

TEST_CASE("status prints members with role, state, lag, timeline, check and each listener's use of them", "[app][cli]") {
    const auto r = app::cli::render_status(two_members(true));
    CHECK(r.leader_routed);
    INFO(r.text);
    CHECK(r.text.rfind("+ Cluster: demo (leader pg0 from dcs, timeline 3) ", 0) == 0);
    CHECK(r.text.find("| Member | Host           | Role    | State     | TL | Lag    | Check                       | master                   | replicas                |") != std::string::npos);
    CHECK(r.text.find("| pg0    | 10.0.0.10:5432 | Leader  | running   | 3  |        | UP 4/4                      | routing (1)              | standby (not a replica) |") != std::string::npos);
    CHECK(r.text.find("| pg1    | 10.0.0.11:5432 | Replica | streaming | 3  | 3.0 MB | DOWN 0/4 (connect: refused) | standby (not the leader) | down                    |") != std::string::npos);
    CHECK(r.text.find("| master   | write | 0.0.0.0:5000 | 1        | 7   | 10000 | 0    | 2.5    | 99    | 2.0 kB | 10 B |") != std::string::npos);
    CHECK(r.text.find("VIP: 10.0.0.100 on eth0: master, held by this host (vrid 51, priority 101/101)") != std::string::npos);
    CHECK(r.text.find("patroxy 0.1.0, pid 42, up 1h2m, 1/20000 connections, configuration generation 2") != std::string::npos);
    const auto none = app::cli::render_status(two_members(false));
    CHECK_FALSE(none.leader_routed);
    CHECK(none.text.rfind("+ Cluster: demo (NO LEADER ROUTED, timeline 3) ", 0) == 0);
}

TEST_CASE("sessions prints each session, and no terminal escape a client chose reaches the screen", "[app][cli]") {
    const auto text = app::cli::render_sessions(two_members(true));
    INFO(text);
    CHECK(text.find("| master   | pg0    | 10.1.1.1:40000 | active | app  | shop     | evil\\x1b[2Jname | no  | 1m15s | 100 B | 2.0 kB |") != std::string::npos);
    CHECK(text.find('\x1b') == std::string::npos);
    CHECK(text.find("1 session (the longest-running first, at most 1000)") != std::string::npos);
}

TEST_CASE("status URLs: from --url, and the configuration's stats port asked on loopback", "[app][cli]") {
    std::string why;
    auto t = app::cli::target_from_url("http://10.0.0.5:7100", why);
    REQUIRE(t);
    CHECK(t->url() == "http://10.0.0.5:7100/status.json");
    t = app::cli::target_from_url("http://[::1]/x.json", why);
    REQUIRE(t);
    CHECK(t->url() == "http://[::1]:7000/x.json");
    CHECK_FALSE(app::cli::target_from_url("https://h:7000", why));
    CHECK_FALSE(app::cli::target_from_url("http://h:99999", why));
    conf::config cfg;
    cfg.stats.bind = "0.0.0.0";
    cfg.stats.port = 7001;
    CHECK(app::cli::target_from_config(cfg).url() == "http://127.0.0.1:7001/status.json");
}

TEST_CASE("patroxy status against a running patroxy: 0 with a leader, 1 without, 3 with wrong credentials or none running", "[app][cli][component]") {
    std::vector<std::unique_ptr<fake_member>> members;
    members.push_back(std::make_unique<fake_member>("pg0", "master"));
    members.push_back(std::make_unique<fake_member>("pg1", "replica"));
    auto cfg = config_for(members);
    cfg.stats.enabled = true;
    cfg.stats.bind = "127.0.0.1";
    cfg.stats.port = free_port();
    cfg.stats.auth = conf::basic_auth{"admin", "secret"};
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    const auto url = "http://127.0.0.1:" + std::to_string(cfg.stats.port);

    CHECK(app::cli::run("status", {"--url", url, "--user", "admin:secret"}) == app::cli::exit_leader);
    CHECK(app::cli::run("sessions", {"--url", url, "--user", "admin:secret"}) == 0);
    CHECK(app::cli::run("status", {"--url", url, "--user", "admin:wrong"}) == app::cli::exit_unreachable);
    CHECK(app::cli::run("status", {"--url", url}) == app::cli::exit_unreachable);  // 401 without credentials
    auto where = *app::cli::target_from_url(url, *std::make_unique<std::string>());
    where.auth = cfg.stats.auth;
    auto got = app::cli::fetch(where, 3s);
    REQUIRE(got.error.empty());
    auto shown = app::cli::render_status(json::parse(got.body));
    INFO(shown.text);
    CHECK(shown.text.find("(leader pg0 from roles") != std::string::npos);
    CHECK(shown.text.find("| pg0    | 127.0.0.1:") != std::string::npos);
    CHECK(shown.text.find("VIP: disabled") != std::string::npos);

    // The leader says it is a replica now: no leader is routed, status says so and exits 1.
    members[0]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(p.wait_for_leader(std::nullopt));
    CHECK(app::cli::run("status", {"--url", url, "--user", "admin:secret"}) == app::cli::exit_no_leader);
    got = app::cli::fetch(where, 3s);
    REQUIRE(got.error.empty());
    CHECK(app::cli::render_status(json::parse(got.body)).text.find("NO LEADER ROUTED") != std::string::npos);

    // Nothing listening there.
    CHECK(app::cli::run("status", {"--url", "http://127.0.0.1:" + std::to_string(free_port()), "--timeout", "500"}) ==
          app::cli::exit_unreachable);
}

TEST_CASE("status with several clusters: a table per cluster with its own listeners, and no leader in one is exit 1", "[app][cli]") {
    auto billing = cluster({"master"});
    auto crm = cluster({"replica", "master"});
    auto cfg = config_for(billing);
    cfg.cluster_name = "billing";
    conf::cluster_config c;
    c.name = "crm";
    c.scope = "crm-pg";
    c.health = cfg.health;
    c.members = config_for(crm).members;
    cfg.more_clusters.push_back(c);
    cfg.listeners[0].cluster = cfg.listeners[1].cluster = "billing";
    auto crm_rw = cfg.listeners[0];
    crm_rw.name = "crm-rw";
    crm_rw.cluster = "crm";
    crm_rw.port = free_port();
    cfg.listeners.push_back(crm_rw);
    cfg.stats.enabled = true;
    cfg.stats.bind = "127.0.0.1";
    cfg.stats.port = free_port();
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] {
        const auto t = p.daemon().topology("crm");
        return p.topology()->leader == 0u && t && t->leader == 1u;
    }));
    const auto url = "http://127.0.0.1:" + std::to_string(cfg.stats.port);
    auto where = *app::cli::target_from_url(url, *std::make_unique<std::string>());
    const auto got = app::cli::fetch(where, 3s);
    REQUIRE(got.error.empty());
    const auto shown = app::cli::render_status(json::parse(got.body));
    INFO(shown.text);
    CHECK(shown.leader_routed);
    CHECK(shown.text.find("Cluster: billing, scope postgres-cluster (leader pg0") != std::string::npos);
    CHECK(shown.text.find("Cluster: crm, scope crm-pg (leader pg1") != std::string::npos);
    // crm's table has crm-rw and not billing's listeners.
    const auto crm_at = shown.text.find("Cluster: crm");
    const auto crm_table = shown.text.substr(crm_at, shown.text.find("| Listener") - crm_at);
    CHECK(crm_table.find("crm-rw") != std::string::npos);
    CHECK(crm_table.find("replicas") == std::string::npos);
    CHECK(app::cli::run("status", {"--url", url}) == app::cli::exit_leader);
    crm[1]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(eventually([&] { return !p.daemon().topology("crm")->leader; }));
    CHECK(app::cli::run("status", {"--url", url}) == app::cli::exit_no_leader);
}
