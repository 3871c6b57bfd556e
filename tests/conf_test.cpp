#include "conf/loader.hpp"

#include "conf/duration.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace patroxy::conf;

namespace {

const std::string members_yaml = R"(members:
  - {name: pg0, host: 10.0.0.1, port: 5432, api: "http://10.0.0.1:8008"}
  - {name: pg1, host: 10.0.0.2, port: 5432, api: "http://10.0.0.2:8008"}
)";

// The problems a text produces (empty when valid).
std::vector<std::string> problems_of(const std::string& yaml) {
    try {
        load_text(yaml, "t.yml");
        return {};
    } catch (const config_error& e) {
        return e.problems();
    }
}

bool has_problem(const std::vector<std::string>& problems, const std::string& exact) {
    return std::find(problems.begin(), problems.end(), exact) != problems.end();
}

}  // namespace

TEST_CASE("a file with only members gets the seed's defaults", "[conf]") {
    const auto cfg = load_text(members_yaml, "t.yml");
    REQUIRE(cfg.members.size() == 2);
    CHECK(cfg.members[1].api.host == "10.0.0.2");
    CHECK(cfg.members[1].api.port == 8008);
    REQUIRE(cfg.listeners.size() == 2);
    CHECK(cfg.listeners[0].role == listener_role::write);
    CHECK(cfg.listeners[0].port == 5000);
    CHECK(cfg.listeners[1].role == listener_role::read);
    CHECK(cfg.listeners[1].port == 5001);
    CHECK(cfg.listeners[1].members.empty());  // every member
    CHECK(cfg.listeners[1].allows("pg1"));
    CHECK(cfg.listeners[0].maxconn == 10000);
    CHECK(cfg.stats.port == 7000);
    CHECK(cfg.health.interval == std::chrono::seconds(3));
    CHECK(cfg.health.fall == 3);
    CHECK(cfg.health.rise == 2);
    CHECK(!cfg.health.max_lag_bytes);
    CHECK(!cfg.health.read_fallback_to_leader);
    CHECK(cfg.timeouts.connect == std::chrono::seconds(5));
    CHECK(cfg.timeouts.retries == 2);
    CHECK(cfg.vip.advert_interval == std::chrono::seconds(1));
    CHECK(cfg.vip.priority == 100);
    CHECK(!cfg.vip.enabled);
}

TEST_CASE("every field of a full file is read", "[conf]") {
    const auto cfg = load_text(members_yaml + R"(scope: prod
workers: 4
listeners:
  - {name: rw, role: write, bind: 127.0.0.1, port: 6432, maxconn: 50}
  - {name: ro, role: read, port: 6433, members: [pg1]}
health: {interval: 2s, fast_interval: 500ms, timeout: 1s, fall: 2, rise: 1, max_lag: 16MB, read_fallback_to_leader: yes}
timeouts: {connect: 1s, client_idle: 30m, server_idle: 1h, retries: 0, wait_for_backend: 0, startup: 5s, drain: 10s}
stats: {bind: 127.0.0.1, port: 7001, auth: {username: a, password: b}}
vip: {interface: eth1, address: 192.168.0.110/24, virtual_router_id: 7, priority: 150, advert_interval: 100ms,
      preempt: false, preempt_delay: 5s, unicast_peers: [192.168.0.102], garp_count: 3, garp_interval: 1s,
      track_weight: 0, unhealthy_after: 3s}
log: {level: warn}
)",
                               "t.yml");
    CHECK(cfg.scope == "prod");
    CHECK(cfg.workers == 4);
    CHECK(cfg.listeners[0].bind == "127.0.0.1");
    CHECK(cfg.listeners[0].maxconn == 50);
    CHECK(cfg.listeners[1].members == std::vector<std::string>{"pg1"});
    CHECK(cfg.health.fast_interval == std::chrono::milliseconds(500));
    CHECK(cfg.health.max_lag_bytes == 16u * 1024 * 1024);
    CHECK(cfg.health.read_fallback_to_leader);
    CHECK(cfg.timeouts.wait_for_backend == std::chrono::milliseconds(0));
    CHECK(cfg.stats.auth->username == "a");
    CHECK(cfg.vip.enabled);
    CHECK(cfg.vip.address == "192.168.0.110");
    CHECK(cfg.vip.prefix == 24);
    CHECK(cfg.vip.advert_interval == std::chrono::milliseconds(100));
    CHECK(!cfg.vip.preempt);
    CHECK(cfg.vip.unicast_peers == std::vector<std::string>{"192.168.0.102"});
    CHECK(cfg.vip.track_weight == 0);
    CHECK(cfg.log.level == log_level::warn);
}

TEST_CASE("each problem names file, line, column and key", "[conf]") {
    SECTION("unknown key") {
        CHECK(has_problem(problems_of(members_yaml + "bogus: 1\n"),
                          "t.yml:4:1: bogus: unknown key (expected one of: scope, workers, maxconn, members, dcs, clusters, "
                          "listeners, health, timeouts, stats, vip, log, control_socket)"));
    }
    SECTION("wrong type") {
        const auto p = problems_of(members_yaml + "health:\n  fall: three\n");
        CHECK(has_problem(p, "t.yml:5:9: health.fall: expected an integer from 1 to 100, got 'three'"));
    }
    SECTION("out of range") {
        const auto p = problems_of(members_yaml + "listeners:\n  - {name: a, role: write, port: 70000}\n");
        CHECK(has_problem(p, "t.yml:5:34: listeners[0].port: expected an integer from 1 to 65535, got '70000'"));
    }
    SECTION("bad address") {
        const auto p = problems_of("members:\n  - {name: pg0, host: 10.0.0.300, api: \"http://10.0.0.1:8008\"}\n");
        CHECK(has_problem(p, "t.yml:2:23: members[0].host: expected an IP address or a host name, got '10.0.0.300'"));
    }
    SECTION("bad API URL") {
        const auto p = problems_of("members:\n  - {name: pg0, host: 10.0.0.1, api: \"ftp://10.0.0.1:8008\"}\n");
        CHECK(has_problem(p, "t.yml:2:38: members[0].api: expected an http:// or https:// URL, got 'ftp://10.0.0.1:8008'"));
        const auto q = problems_of("members:\n  - {name: pg0, host: 10.0.0.1, api: \"http://bad_name:8008\"}\n");
        CHECK(has_problem(q, "t.yml:2:38: members[0].api: expected an IP address or a host name, got 'bad_name' in "
                             "'http://bad_name:8008'"));
    }
    SECTION("duplicate member names and addresses") {
        const auto p = problems_of(members_yaml + "  - {name: pg1, host: 10.0.0.2, port: 5432, api: \"http://10.0.0.3:8008\"}\n");
        CHECK(has_problem(p, "t.yml:4:12: members[2].name: duplicate member name 'pg1'"));
        CHECK(has_problem(p, "t.yml:4:39: members[2].port: duplicate PostgreSQL address 10.0.0.2:5432"));
    }
    SECTION("a listener with no member to route to") {
        const auto p = problems_of(members_yaml + "listeners:\n  - {name: a, role: read, port: 6000, members: []}\n");
        CHECK(has_problem(p, "t.yml:5:48: listeners[0].members: a listener needs at least one member to route to"));
    }
    SECTION("a listener naming a member that does not exist") {
        const auto p = problems_of(members_yaml + "listeners:\n  - {name: a, role: read, port: 6000, members: [pg7]}\n");
        CHECK(has_problem(p, "t.yml:5:49: listeners[0].members[0]: no member named 'pg7'"));
    }
    SECTION("no members at all") {
        CHECK(has_problem(problems_of("scope: x\n"),
                          "t.yml:1:1: members: expected a non-empty list of members (name, host, port, api), or a dcs section"));
    }
    SECTION("a required key is missing") {
        const auto p = problems_of("members:\n  - {name: pg0, host: 10.0.0.1}\n");
        CHECK(has_problem(p, "t.yml:2:5: members[0].api: is required"));
    }
    SECTION("a duration without a unit") {
        const auto p = problems_of(members_yaml + "health: {interval: 3}\n");
        CHECK(has_problem(p, "t.yml:4:20: health.interval: expected a duration from 100ms to 1h (units ms, s, m, h), got '3'"));
    }
    SECTION("a role that is neither write nor read") {
        const auto p = problems_of(members_yaml + "listeners:\n  - {name: a, role: rw, port: 6000}\n");
        CHECK(has_problem(p, "t.yml:5:21: listeners[0].role: expected one of 'write', 'read', 'sync', 'async', 'any', 'standby_leader', got 'rw'"));
    }
    SECTION("two sockets on one port") {
        const auto p = problems_of(members_yaml + "listeners:\n  - {name: a, role: write, port: 7000}\n");
        CHECK(has_problem(p, "t.yml:1:1: stats.port: port 7000 is already used by listener 'a'"));
    }
    SECTION("a VIP interval VRRPv3 cannot carry") {
        const auto p = problems_of(members_yaml + "vip: {interface: eth0, address: 10.0.0.9/24, advert_interval: 1005ms}\n");
        CHECK(has_problem(p, "t.yml:4:63: vip.advert_interval: VRRPv3 counts in centiseconds: use a multiple of 10ms"));
    }
    SECTION("YAML syntax") {
        const auto p = problems_of("members: [\n");
        REQUIRE(p.size() == 1);
        CHECK(p[0].rfind("t.yml:2:1: ", 0) == 0);
    }
}

TEST_CASE("every problem is reported in one pass", "[conf]") {
    const auto p = problems_of(members_yaml + "workers: -1\nhealth: {fall: 0, rise: x}\nlog: {level: loud}\n");
    CHECK(p.size() == 4);
}

TEST_CASE("the example configuration validates", "[conf]") {
    const auto cfg = load_file(PATROXY_SOURCE_DIR "/deploy/patroxy.example.yml");
    CHECK(cfg.members.size() == 3);
    CHECK(cfg.members[0].host == "192.168.0.90");
    CHECK(cfg.vip.enabled);
    CHECK(cfg.vip.address == "192.168.0.110");
    const auto lab = load_file(PATROXY_SOURCE_DIR "/lab/patroxy.yml");
    CHECK(lab.members.size() == 3);
}

TEST_CASE("a missing file is a clear error", "[conf]") {
    try {
        load_file("/nonexistent/patroxy.yml");
        FAIL("no error");
    } catch (const config_error& e) {
        CHECK(std::string(e.what()) == "/nonexistent/patroxy.yml: cannot open the file\n");
    }
}

TEST_CASE("durations and sizes", "[conf]") {
    CHECK(parse_duration("250ms") == std::chrono::milliseconds(250));
    CHECK(parse_duration("1.5s") == std::chrono::milliseconds(1500));
    CHECK(parse_duration("2m") == std::chrono::minutes(2));
    CHECK(parse_duration("1h") == std::chrono::hours(1));
    CHECK(parse_duration("0") == std::chrono::milliseconds(0));
    CHECK(!parse_duration("3"));
    CHECK(!parse_duration("-1s"));
    CHECK(!parse_duration("s"));
    CHECK(!parse_duration("3 s"));
    CHECK(parse_size("1048576") == 1048576u);
    CHECK(parse_size("16MB") == 16u * 1024 * 1024);
    CHECK(parse_size("512kB") == 512u * 1024);
    CHECK(!parse_size("16 MB"));
    CHECK(!parse_size("lots"));
}

TEST_CASE("a dcs section: members become optional, the scope defaults to the top-level one", "[conf][dcs]") {
    const auto cfg = load_text(R"(scope: batman
dcs:
  type: etcd3
  hosts: ["10.0.0.11:2379", "etcd2.example.org", "[2001:db8::13]:2379"]
  namespace: /postgresql-common/
  username: patroxy
  password: secret
  resync_interval: 10s
)", "t.yml");
    CHECK(cfg.dcs.enabled);
    CHECK(cfg.dcs.type == dcs_config::kind::etcd3);
    REQUIRE(cfg.dcs.hosts.size() == 3);
    CHECK(cfg.dcs.hosts[1] == std::pair<std::string, std::uint16_t>{"etcd2.example.org", 2379});
    CHECK(cfg.dcs.hosts[2] == std::pair<std::string, std::uint16_t>{"2001:db8::13", 2379});
    CHECK(cfg.dcs.ns == "/postgresql-common/");
    CHECK(cfg.dcs.scope == "batman");
    REQUIRE(cfg.dcs.auth);
    CHECK(cfg.dcs.auth->username == "patroxy");
    CHECK(!cfg.dcs.https);
    CHECK(cfg.members.empty());
    const auto v2 = load_text("dcs: {type: etcd, hosts: [\"https://10.0.0.1:2379\"], scope: 15-main}\n", "t.yml");
    CHECK(v2.dcs.type == dcs_config::kind::etcd2);
    CHECK(v2.dcs.https);
    CHECK(v2.dcs.scope == "15-main");
}

TEST_CASE("dcs problems name file, line, column and key", "[conf][dcs]") {
    CHECK(has_problem(problems_of("dcs: {hosts: [\"10.0.0.1:2379\"]}\n"), "t.yml:1:6: dcs.type: is required ('etcd3' or 'etcd')"));
    CHECK(has_problem(problems_of("dcs: {type: zookeeper, hosts: [\"10.0.0.1\"]}\n"),
                      "t.yml:1:13: dcs.type: expected one of 'etcd3', 'etcd', got 'zookeeper'"));
    CHECK(has_problem(problems_of("dcs: {type: etcd3}\n"),
                      "t.yml:1:6: dcs.hosts: expected a non-empty list of etcd members (host:port)"));
    CHECK(has_problem(problems_of("dcs: {type: etcd3, hosts: [\"10.0.0.1:99999\"]}\n"),
                      "t.yml:1:28: dcs.hosts[0]: bad port '99999'"));
    CHECK(has_problem(problems_of("dcs: {type: etcd3, hosts: [\"10.0.0.1\"], username: u}\n"),
                      "t.yml:1:6: dcs: username and password go together"));
    CHECK(has_problem(problems_of("dcs: {type: etcd3, hosts: [\"10.0.0.1\"], tls: {ca: /nonexistent/ca.crt}}\n"),
                      "t.yml:1:46: dcs.tls: cannot read '/nonexistent/ca.crt'"));
    CHECK(has_problem(problems_of("dcs: {type: etcd3, hosts: [\"10.0.0.1\"], stale_after: 6s}\n"),
                      "t.yml:1:54: dcs.stale_after: must be longer than resync_interval + timeout (7s), or a quiet "
                      "cluster reads as stale between resyncs"));
}

TEST_CASE("IPv6 and host names wherever addresses are taken, https APIs", "[conf]") {
    const auto cfg = load_text(R"(members:
  - {name: pg0, host: "2001:db8::10", port: 5432, api: "https://[2001:db8::10]:8008"}
  - {name: pg1, host: pg1.example.org, port: 5432, api: "http://pg1.example.org:8008/patroni"}
listeners:
  - {name: w, role: write, bind: "::", port: 5000}
stats: {bind: "::1", port: 7000}
)", "t.yml");
    CHECK(cfg.members[0].host == "2001:db8::10");
    CHECK(cfg.members[0].api.host == "2001:db8::10");
    CHECK(cfg.members[0].api.https);
    CHECK(cfg.members[1].host == "pg1.example.org");
    CHECK(cfg.members[1].api.port == 8008);
    CHECK(cfg.listeners[0].bind == "::");
    CHECK(cfg.stats.bind == "::1");
}

TEST_CASE("routing classes: roles, fallback, max_lag, tags, prefer, balance, member weight and maxconn", "[conf]") {
    const auto cfg = load_text(R"(members:
  - {name: pg0, host: 10.0.0.1, port: 5432, api: "http://10.0.0.1:8008", weight: 3, maxconn: 50}
  - {name: pg1, host: 10.0.0.2, port: 5432, api: "http://10.0.0.2:8008", weight: 0}
listeners:
  - {name: master, role: write, port: 5000}
  - name: sync
    role: sync
    port: 5002
    fallback: [read, write]
    max_lag: {bytes: 16MB, time: 30s, return_below: 0.25}
    allow_archive_recovery: true
    tags: {dc: a}
    prefer: {rack: r1}
    balance: leastconn
  - {name: async, role: async, port: 5003, balance: first, fallback: read}
  - {name: ro, role: any, port: 5004}
  - {name: standby, role: standby_leader, port: 5005}
)", "t.yml");
    REQUIRE(cfg.listeners.size() == 5);
    CHECK(cfg.members[0].weight == 3);
    CHECK(cfg.members[0].maxconn == 50);
    CHECK(cfg.members[1].weight == 0);
    const auto& s = cfg.listeners[1];
    CHECK(s.role == listener_role::sync);
    CHECK(s.fallback == std::vector<listener_role>{listener_role::read, listener_role::write});
    CHECK(s.max_lag.bytes == 16u * 1024 * 1024);
    CHECK(s.max_lag.time == std::chrono::milliseconds(30000));
    CHECK(s.max_lag.return_below == 0.25);
    CHECK(s.allow_archive_recovery);
    CHECK(s.tags == tag_selector{{"dc", "a"}});
    CHECK(s.prefer == tag_selector{{"rack", "r1"}});
    CHECK(s.balance == balance_mode::leastconn);
    CHECK(cfg.listeners[2].fallback == std::vector<listener_role>{listener_role::read});
    CHECK(cfg.listeners[2].balance == balance_mode::first);
    CHECK(cfg.listeners[3].role == listener_role::any);
    CHECK(cfg.listeners[4].role == listener_role::standby_leader);
}

TEST_CASE("the health section's max_lag and read_fallback_to_leader still work, as listener defaults", "[conf]") {
    const auto cfg = load_text(members_yaml + "health: {max_lag: 1MB, read_fallback_to_leader: true}\n", "t.yml");
    CHECK(cfg.listeners[0].fallback.empty());
    CHECK(!cfg.listeners[0].max_lag.any());   // the write listener routes to the leader
    CHECK(cfg.listeners[1].fallback == std::vector<listener_role>{listener_role::write, listener_role::standby_leader});
    CHECK(cfg.listeners[1].max_lag.bytes == 1024u * 1024);
}

TEST_CASE("health.handback_guard: unset is twice the ttl and a duration or off sets it", "[conf]") {
    CHECK(!load_text(members_yaml, "t.yml").health.handback_guard);
    CHECK(load_text(members_yaml + "health: {handback_guard: 45s}\n", "t.yml").health.handback_guard ==
          std::chrono::milliseconds{45'000});
    CHECK(load_text(members_yaml + "health: {handback_guard: off}\n", "t.yml").health.handback_guard ==
          std::chrono::milliseconds{0});
    const auto problems = problems_of(members_yaml + "health: {handback_guard: 2h}\n");
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("health.handback_guard") != std::string::npos);
}

TEST_CASE("routing class mistakes are named with file, line and key", "[conf]") {
    const auto p = problems_of(members_yaml + R"(listeners:
  - {name: a, role: write, port: 5000, fallback: [read]}
  - {name: b, role: read, port: 5001, fallback: [read, bogus], max_lag: {}, balance: random}
  - {name: c, role: write, port: 5002, max_lag: {bytes: 1MB}}
  - {name: d, role: sync, port: 5003, max_lag: {time: 1s, return_below: 2}, tags: [dc]}
)");
    CHECK(has_problem(p, "t.yml:5:51: listeners[0].fallback[0]: a write listener has no fallback: its sessions need the leader"));
    CHECK(has_problem(p, "t.yml:6:50: listeners[1].fallback[0]: 'read' is already tried before this"));
    CHECK(has_problem(p, "t.yml:6:56: listeners[1].fallback[1]: expected one of 'read', 'sync', 'async', 'any', 'write', 'standby_leader', got 'bogus'"));
    CHECK(has_problem(p, "t.yml:6:73: listeners[1].max_lag: needs bytes, time or both"));
    CHECK(has_problem(p, "t.yml:6:86: listeners[1].balance: expected one of 'roundrobin', 'leastconn', 'first', got 'random'"));
    CHECK(has_problem(p, "t.yml:7:49: listeners[2].max_lag: applies to replicas; a write listener routes to the leader"));
    CHECK(has_problem(p, "t.yml:8:55: listeners[3].max_lag.time: must be at least health.interval (3s): replay delay is measured at checks, and a shorter limit would flap"));
    CHECK(has_problem(p, "t.yml:8:73: listeners[3].max_lag.return_below: expected a fraction of the limit above 0 and at most 1, got '2'"));
    CHECK(has_problem(p, "t.yml:8:83: listeners[3].tags: expected a mapping of tag names to values, such as {dc: a}"));
}

TEST_CASE("clusters: several Patroni clusters, each with its scope, members or DCS and checks", "[conf]") {
    const auto cfg = load_text(R"(health: {interval: 2s, fall: 4}
clusters:
  - name: billing
    scope: billing-pg
    members:
      - {name: pg0, host: 10.0.0.1, api: "http://10.0.0.1:8008"}
      - {name: pg1, host: 10.0.0.2, api: "http://10.0.0.2:8008"}
  - name: crm
    scope: crm-pg
    health: {interval: 1s}
    dcs: {type: etcd3, hosts: ["10.0.1.5:2379"]}
    members:
      - {name: pg0, host: 10.0.1.1, api: "http://10.0.1.1:8008"}
listeners:
  - {name: billing-rw, cluster: billing, role: write, port: 5000}
  - {name: billing-ro, cluster: billing, role: read, port: 5001, members: [pg1]}
  - {name: crm-rw, cluster: crm, role: write, port: 5100}
)",
                               "t.yml");
    REQUIRE(cfg.cluster_count() == 2);
    CHECK(cfg.cluster_label(0) == "billing");
    CHECK(cfg.scope == "billing-pg");
    CHECK(cfg.members.size() == 2);
    CHECK(cfg.cluster_label(1) == "crm");
    const auto crm = cfg.cluster(1);
    CHECK(crm.scope == "crm-pg");
    CHECK(crm.dcs.enabled);
    CHECK(crm.dcs.scope == "crm-pg");
    CHECK(crm.health.interval == std::chrono::seconds(1));   // its own
    CHECK(crm.health.fall == 4);        // the top-level default
    CHECK(cfg.health.interval == std::chrono::seconds(2));
    CHECK(cfg.cluster_of(*cfg.listener("crm-rw")) == 1);
    CHECK(cfg.cluster_of(*cfg.listener("billing-ro")) == 0);
    // Each monitor's view: its cluster at the top, its listeners only.
    const auto view = cluster_view(cfg, 1);
    CHECK(view->scope == "crm-pg");
    CHECK(view->members.size() == 1);
    CHECK(view->members[0].host == "10.0.1.1");
    REQUIRE(view->listeners.size() == 1);
    CHECK(view->listeners[0].name == "crm-rw");
    CHECK(view->cluster_count() == 1);
    CHECK(view->cluster_label(0) == "crm");
}

TEST_CASE("a single-cluster file is one cluster labelled by its scope", "[conf]") {
    const auto cfg = load_text(members_yaml + "scope: prod\n", "t.yml");
    CHECK(cfg.cluster_count() == 1);
    CHECK(cfg.cluster_label(0) == "prod");
    CHECK(cfg.cluster_of(cfg.listeners[0]) == 0);
}

TEST_CASE("clusters mistakes are named with file, line and key", "[conf]") {
    const std::string two = R"(clusters:
  - name: a
    members: [{name: pg0, host: 10.0.0.1, api: "http://10.0.0.1:8008"}]
  - name: b
    members: [{name: pg0, host: 10.0.1.1, api: "http://10.0.1.1:8008"}]
)";
    CHECK(has_problem(problems_of(two + "listeners:\n  - {name: x, role: write, port: 5000}\n"),
                      "t.yml:7:5: listeners[0].cluster: is required when there are several clusters"));
    CHECK(has_problem(problems_of(two + "listeners:\n  - {name: x, cluster: c, role: write, port: 5000}\n"),
                      "t.yml:7:24: listeners[0].cluster: no cluster named 'c' (there are: a, b)"));
    CHECK(has_problem(problems_of(two + "listeners:\n  - {name: x, cluster: b, role: read, port: 5000, members: [pg1]}\n"),
                      "t.yml:7:61: listeners[0].members[0]: no member named 'pg1' in cluster 'b'"));
    CHECK(has_problem(problems_of(two + "scope: x\n"),
                      "t.yml:6:8: scope: goes inside each entry of clusters: when there is a clusters list"));
    CHECK(has_problem(problems_of("clusters:\n  - name: a\n    members: [{name: pg0, host: 10.0.0.1, api: \"http://10.0.0.1:8008\"}]\n"
                                  "  - name: a\n    members: [{name: pg0, host: 10.0.1.1, api: \"http://10.0.1.1:8008\"}]\n"),
                      "t.yml:4:11: clusters[1].name: duplicate cluster name 'a'"));
    CHECK(has_problem(problems_of("clusters:\n  - name: a\n    dcs: {type: etcd3}\n"),
                      "t.yml:3:10: clusters[0].dcs.hosts: expected a non-empty list of etcd members (host:port)"));
    CHECK(has_problem(problems_of("clusters:\n  - name: a\n    members: [{name: pg0, host: 10.0.0.1, api: \"http://10.0.0.1:8008\"}]\n"
                                  "    health: {fall: 0}\n"),
                      "t.yml:4:20: clusters[0].health.fall: expected an integer from 1 to 100, got '0'"));
}
