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
    CHECK(cfg.listeners[1].members == std::vector<std::size_t>{0, 1});
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
    CHECK(cfg.listeners[1].members == std::vector<std::size_t>{1});
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
                          "t.yml:4:1: bogus: unknown key (expected one of: scope, workers, members, listeners, health, "
                          "timeouts, stats, vip, log)"));
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
        CHECK(has_problem(p, "t.yml:2:23: members[0].host: expected an IPv4 or IPv6 address, got '10.0.0.300'"));
    }
    SECTION("bad API URL") {
        const auto p = problems_of("members:\n  - {name: pg0, host: 10.0.0.1, api: \"https://10.0.0.1:8008\"}\n");
        CHECK(has_problem(p, "t.yml:2:38: members[0].api: only http:// URLs are supported, got 'https://10.0.0.1:8008'"));
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
                          "t.yml:1:1: members: expected a non-empty list of members (name, host, port, api)"));
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
        CHECK(has_problem(p, "t.yml:5:21: listeners[0].role: expected one of 'write', 'read', got 'rw'"));
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
