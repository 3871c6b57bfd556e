#include "health/topology.hpp"

#include "health/member_tracker.hpp"
#include "health/patroni_report.hpp"
#include "proxy/balancer.hpp"

#include <catch2/catch.hpp>

using namespace patroxy;
using namespace patroxy::health;

namespace {

// Patroni 3.0.2's answers, as captured from the lab cluster.
const std::string leader_302 =
    R"({"state": "running", "role": "master", "server_version": 150020, "xlog": {"location": 83889584},
        "timeline": 1, "replication": [{"usename": "replicator", "application_name": "pg1", "state": "streaming"},
        {"usename": "replicator", "application_name": "pg2", "state": "streaming"}],
        "patroni": {"version": "3.0.2", "scope": "postgres-cluster"}})";
const std::string replica_302 =
    R"({"state": "running", "role": "replica", "xlog": {"received_location": 83889000,
        "replayed_location": 83888000, "paused": false}, "timeline": 1,
        "patroni": {"version": "3.0.2", "scope": "postgres-cluster"}})";

patroni_report parse_ok(const std::string& body) {
    std::string why;
    auto r = parse_patroni(body, why);
    INFO(why);
    REQUIRE(r);
    return *r;
}

std::string answer(const std::string& role, const std::string& extra = "") {
    return R"({"state": "running", "role": ")" + role + R"(", "timeline": 2)" + extra + "}";
}

check_result good(const std::string& body) {
    check_result r;
    r.answered = true;
    r.http_status = 200;
    r.report = parse_ok(body);
    return r;
}

check_result failed() {
    check_result r;
    r.error = "connect: Connection refused";
    return r;
}

member_view view(std::size_t i, const std::string& body, bool up = true) {
    member_view v;
    v.index = i;
    v.name = "pg" + std::to_string(i);
    v.up = up;
    v.report = parse_ok(body);
    return v;
}

}  // namespace

TEST_CASE("Patroni 3.x and 4.x leader answers both mean primary", "[health]") {
    const auto r = parse_ok(leader_302);
    CHECK(r.role == patroni_role::primary);
    CHECK(r.role_text == "master");
    CHECK(r.running());
    CHECK(r.timeline == 1);
    CHECK(r.wal_position == 83889584u);
    CHECK(r.streaming_replicas == 2);
    CHECK(r.patroni_version == "3.0.2");
    CHECK(r.scope == "postgres-cluster");
    CHECK(parse_ok(answer("primary")).role == patroni_role::primary);
    CHECK(parse_ok(answer("standby_leader")).claims_leadership());
    CHECK(parse_ok(R"({"state": "streaming", "role": "replica"})").running());
}

TEST_CASE("a replica's position, tags and pause are read", "[health]") {
    const auto r = parse_ok(replica_302);
    CHECK(r.role == patroni_role::replica);
    CHECK(r.wal_position == 83889000u);
    CHECK(r.replayed_position == 83888000u);
    const auto tagged = parse_ok(answer("replica", R"(, "tags": {"noloadbalance": true, "nofailover": "true", "zone": "a"}, "pause": true)"));
    CHECK(tagged.noloadbalance);
    CHECK(tagged.nofailover);
    CHECK(tagged.tags.at("zone") == "a");
    CHECK(tagged.pause);
}

TEST_CASE("garbage and wrong types are failed checks, never exceptions", "[health]") {
    std::string why;
    CHECK(!parse_patroni("<html>502</html>", why));
    CHECK(why == "body is not a JSON object");
    CHECK(!parse_patroni("[1,2]", why));
    CHECK(!parse_patroni(R"({"state": 1, "role": "master"})", why));
    CHECK(why == "no role or state in the answer");
    CHECK(!parse_patroni("", why));
    // Odd types inside optional fields are ignored, not thrown on.
    const auto odd = parse_ok(R"({"state": "running", "role": "master", "timeline": "x", "xlog": 5,
        "replication": [1, {"state": 7}], "patroni": {"version": 3}, "tags": []})");
    CHECK(!odd.timeline);
    CHECK(odd.streaming_replicas == 0);
}

TEST_CASE("hysteresis: down after fall failures, up after rise successes", "[health]") {
    hysteresis h(2, 3);
    CHECK(!h.up());
    h.record(true);  // the first answer at startup is enough
    CHECK(h.up());
    h.record(false);
    h.record(false);
    CHECK(h.up());
    CHECK(h.changing());
    h.record(false);
    CHECK(!h.up());
    h.record(true);
    CHECK(!h.up());
    h.record(true);
    CHECK(h.up());
    h.record(false);
    h.record(true);  // a success resets the way down
    h.record(false);
    h.record(false);
    CHECK(h.up());
}

TEST_CASE("a definite answer moves the role at once but failures keep it until fall", "[health]") {
    member_tracker t(2, 3);
    const auto now = std::chrono::steady_clock::now();
    CHECK(t.record(good(answer("master")), now));
    CHECK(t.report()->role == patroni_role::primary);
    CHECK(t.record(good(answer("replica")), now));  // no fall count for "I am a replica now"
    CHECK(t.report()->role == patroni_role::replica);
    t.record(good(answer("master")), now);
    CHECK(!t.record(failed(), now));
    CHECK(!t.record(failed(), now));
    CHECK(t.report()->role == patroni_role::primary);  // still within fall
    CHECK(t.record(failed(), now));
    CHECK(!t.up());
    CHECK(!t.report());
    CHECK(t.last().error == "connect: Connection refused");
}

TEST_CASE("topology: one leader, readable replicas", "[health]") {
    conf::health_config h;
    const auto t = build_topology(1, {view(0, leader_302), view(1, replica_302), view(2, answer("replica"))}, h);
    CHECK(t.leader == 0u);
    CHECK(t.readable == std::vector<std::size_t>{1, 2});
    CHECK(t.members[1].lag_bytes == 584u);
    CHECK(t.timeline == 1);
    CHECK(!t.split_brain());
}

TEST_CASE("topology: two claimants route writes to none", "[health]") {
    conf::health_config h;
    const auto t = build_topology(1, {view(0, answer("master")), view(1, answer("primary")), view(2, answer("replica"))}, h);
    CHECK(t.split_brain());
    CHECK(!t.leader);
    CHECK(t.readable == std::vector<std::size_t>{2});
}

TEST_CASE("topology: down, stopped, lagging and noloadbalance members get no new reads", "[health]") {
    conf::health_config h;
    h.max_lag_bytes = 1000;
    const auto t = build_topology(1,
                                  {view(0, leader_302), view(1, replica_302),
                                   view(2, R"({"state": "running", "role": "replica", "xlog": {"received_location": 80000000}})"),
                                   view(3, answer("replica", R"(, "tags": {"noloadbalance": true})")),
                                   view(4, R"({"state": "stopped", "role": "replica"})"), view(5, answer("replica"), false)},
                                  h);
    CHECK(t.readable == std::vector<std::size_t>{1});
    CHECK(t.keeps_read(2));   // lag keeps new sessions away, not open ones
    CHECK(t.keeps_read(3));
    CHECK(!t.keeps_read(4));
    CHECK(!t.keeps_read(5));
    // With no leader the lag is unknown: reads keep flowing through a failover.
    const auto no_leader = build_topology(2, {view(1, replica_302), view(2, answer("replica"))}, h);
    CHECK(no_leader.readable.size() == 2);
}

TEST_CASE("balancer: write to the leader, reads round-robin, optional fallback", "[health]") {
    conf::health_config h;
    const auto t = build_topology(1, {view(0, leader_302), view(1, replica_302), view(2, answer("replica"))}, h);
    const auto listeners = conf::config::default_listeners(3);
    CHECK(proxy::candidates(t, listeners[0], false, 0) == std::vector<std::size_t>{0});
    CHECK(proxy::candidates(t, listeners[1], false, 0) == std::vector<std::size_t>{1, 2});
    CHECK(proxy::candidates(t, listeners[1], false, 1) == std::vector<std::size_t>{2, 1});
    CHECK(proxy::candidates(t, listeners[1], false, 2).front() == 1);
    const auto only_leader = build_topology(2, {view(0, leader_302)}, h);
    auto one = conf::config::default_listeners(1);
    CHECK(proxy::candidates(only_leader, one[1], false, 0).empty());
    CHECK(proxy::candidates(only_leader, one[1], true, 0) == std::vector<std::size_t>{0});
    CHECK(proxy::keeps_session(t, conf::listener_role::write, 0));
    CHECK(!proxy::keeps_session(t, conf::listener_role::write, 1));
    CHECK(proxy::keeps_session(t, conf::listener_role::read, 0));  // a fallback read session on the leader
}

TEST_CASE("same_routing ignores what routing does not use", "[health]") {
    conf::health_config h;
    const auto a = build_topology(1, {view(0, leader_302), view(1, replica_302)}, h);
    const auto b = build_topology(2, {view(0, leader_302), view(1, answer("replica"))}, h);
    CHECK(a.same_routing(b));
    const auto c = build_topology(3, {view(0, answer("replica")), view(1, answer("master"))}, h);
    CHECK(!a.same_routing(c));
}
