#include "health/topology.hpp"

#include "health/eligibility.hpp"
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

// The topology as the monitor hands it out: each listener's class computed.
topology classified(topology t, const std::vector<conf::listener_config>& listeners = conf::config::default_listeners()) {
    eligibility e;
    e.apply(t, listeners, 2);
    return t;
}

std::vector<std::size_t> pick(const topology& t, const conf::listener_config& l, std::size_t turn) {
    return proxy::candidates(t, l, turn).members;
}

member_view view(std::size_t i, const std::string& body, bool up = true) {
    member_view v;
    v.id = static_cast<member_id>(i);
    v.name = "pg" + std::to_string(i);
    v.host = "127.0.0.1";
    v.port = static_cast<std::uint16_t>(15432 + i);
    v.up = up;
    v.ever_up = true;
    v.report = parse_ok(body);
    return v;
}

// A member whose API stopped answering: down after `fall`, no report left.
member_view silent(std::size_t i) {
    member_view v = view(i, answer("replica"), false);
    v.report.reset();
    return v;
}

lock_observation key(std::optional<std::string> holder, bool changing = false) {
    return {lock_observation::source::dcs, std::move(holder), changing};
}

lock_observation cluster_says(std::optional<std::string> holder) {
    return {lock_observation::source::cluster, std::move(holder), false};
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
    CHECK(why == "body is not valid JSON");
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
    const auto t = classified(build_topology(1, {view(0, leader_302), view(1, replica_302), view(2, answer("replica"))}, h));
    const auto listeners = conf::config::default_listeners();
    CHECK(pick(t, listeners[0], 0) == std::vector<std::size_t>{0});
    CHECK(pick(t, listeners[1], 0) == std::vector<std::size_t>{1, 2});
    CHECK(pick(t, listeners[1], 1) == std::vector<std::size_t>{2, 1});
    CHECK(pick(t, listeners[1], 2).front() == 1);
    auto one = conf::config::default_listeners();
    CHECK(pick(classified(build_topology(2, {view(0, leader_302)}, h), one), one[1], 0).empty());
    one[1].fallback = {conf::listener_role::write};
    const auto only_leader = classified(build_topology(2, {view(0, leader_302)}, h), one);
    const auto c = proxy::candidates(only_leader, one[1], 0);
    CHECK(c.members == std::vector<std::size_t>{0});
    CHECK(c.via == 1);
    using conf::listener_role;
    CHECK(proxy::keeps_session(t, listeners[0], listener_role::write, 0));
    CHECK(!proxy::keeps_session(t, listeners[0], listener_role::write, 1));
    CHECK(proxy::keeps_session(t, one[1], listener_role::write, 0));       // a fallback read session on the leader
    CHECK(!proxy::keeps_session(t, listeners[1], listener_role::read, 0));  // a read session on a promoted replica
}

TEST_CASE("same_routing ignores what routing does not use", "[health]") {
    conf::health_config h;
    const auto a = build_topology(1, {view(0, leader_302), view(1, replica_302)}, h);
    const auto b = build_topology(2, {view(0, leader_302), view(1, answer("replica"))}, h);
    CHECK(a.same_routing(b));
    const auto c = build_topology(3, {view(0, answer("replica")), view(1, answer("master"))}, h);
    CHECK(!a.same_routing(c));
    // A replica's DCS key keeps its sessions only while its API is DOWN: for
    // an up one (say, the view going stale and fresh again) nothing changes.
    auto keyed = view(1, replica_302);
    keyed.dcs_replica = true;
    CHECK(a.same_routing(build_topology(4, {view(0, leader_302), keyed}, h)));
    auto down = view(1, replica_302, false);
    auto down_keyed = down;
    down_keyed.dcs_replica = true;
    CHECK(!build_topology(5, {view(0, leader_302), down}, h).same_routing(build_topology(6, {view(0, leader_302), down_keyed}, h)));
}

TEST_CASE("an answer nested deeper than the limit is a failed check, not a stack overflow", "[health]") {
    std::string why;
    // 127k levels inside tags (a 254 KB body) once overflowed the stack in the tags' dump().
    std::string deep = R"({"state": "running", "role": "replica", "tags": {"x": )";
    deep += std::string(127'000, '[') + std::string(127'000, ']') + "}}";
    CHECK(!parse_patroni(deep, why));
    CHECK(why == "JSON nested deeper than 16 levels");
    // Just inside the limit: parsed, the tag rendered as text.
    std::string ok = R"({"state": "running", "role": "replica", "tags": {"x": )";
    ok += std::string(13, '[') + std::string(13, ']') + "}}";
    const auto r = parse_ok(ok);
    CHECK(r.tags.at("x") == std::string(13, '[') + std::string(13, ']'));
}

TEST_CASE("the leader key: a holder whose API hangs still leads, and cuts nothing", "[health][dcs]") {
    conf::health_config h;
    const auto t = build_topology(1, {silent(0), view(1, replica_302), view(2, answer("replica"))}, h, key("pg0"));
    REQUIRE(t.leader == 0u);
    CHECK(t.leader_source == lock_observation::source::dcs);
    CHECK(t.keeps_write(0));
    CHECK(pick(classified(t), conf::config::default_listeners()[0], 0) == std::vector<std::size_t>{0});
    // Without the key (REST alone), the same answers leave no leader.
    CHECK(!build_topology(2, {silent(0), view(1, replica_302), view(2, answer("replica"))}, h).leader);
    // A holder never seen up is not routed to on the key's word alone...
    auto never = silent(0);
    never.ever_up = false;
    CHECK(!build_topology(3, {never, view(1, replica_302)}, h, key("pg0")).leader);
    // ...unless its own member key says it runs as primary.
    never.dcs_primary = true;
    CHECK(build_topology(4, {never, view(1, replica_302)}, h, key("pg0")).leader == 0u);
}

TEST_CASE("the leader key decides a double claim, and its holder's own answer can veto it", "[health][dcs]") {
    conf::health_config h;
    const std::vector<member_view> two = {view(0, answer("master")), view(1, answer("primary")), view(2, answer("replica"))};
    const auto t = build_topology(1, two, h, key("pg1"));
    CHECK(t.leader == 1u);
    CHECK(!t.split_brain());
    CHECK(t.double_claim_resolved());
    CHECK(!t.keeps_write(0));  // the other claimant's sessions are cut
    // The holder answers as a replica (not promoted yet, or demoted): nobody writes.
    const auto veto = build_topology(2, {view(0, answer("master")), view(1, answer("replica"))}, h, key("pg1"));
    CHECK(!veto.leader);
    // A released key: nobody writes, whoever claims.
    CHECK(!build_topology(3, {view(0, answer("master")), view(1, answer("replica"))}, h, key(std::nullopt)).leader);
    // A holder that is not running PostgreSQL does not lead either.
    CHECK(!build_topology(4, {view(0, R"({"state": "starting", "role": "master"})")}, h, key("pg0")).leader);
}

TEST_CASE("an announced switchover holds new writes, open sessions stay", "[health][dcs]") {
    conf::health_config h;
    const auto t = build_topology(1, {view(0, leader_302), view(1, replica_302)}, h, key("pg0", true));
    CHECK(t.leader == 0u);
    CHECK(t.writes_held);
    CHECK(t.keeps_write(0));
    const auto listeners = conf::config::default_listeners();
    CHECK(pick(classified(t), listeners[0], 0).empty());
    CHECK(pick(classified(t), listeners[1], 0) == std::vector<std::size_t>{1});  // reads go on
    const auto after = build_topology(2, {view(0, leader_302), view(1, replica_302)}, h, key("pg0", false));
    CHECK(!after.same_routing(t));
}

TEST_CASE("GET /cluster's lock holder keeps a silent holder and breaks ties, never delays a claimant", "[health]") {
    conf::health_config h;
    // The holder's API hangs, the others still name it.
    const auto hung = build_topology(1, {silent(0), view(1, replica_302)}, h, cluster_says("pg0"));
    CHECK(hung.leader == 0u);
    CHECK(hung.leader_source == lock_observation::source::cluster);
    // Two claimants: the one the lock names.
    const auto tie = build_topology(2, {view(0, answer("master")), view(1, answer("master"))}, h, cluster_says("pg1"));
    CHECK(tie.leader == 1u);
    // A new leader answers before the others' copy of the key moves: it leads at once.
    const auto fresh = build_topology(3, {view(0, answer("replica")), view(1, answer("master"))}, h, cluster_says("pg0"));
    CHECK(fresh.leader == 1u);
    CHECK(fresh.leader_source == lock_observation::source::none);
    // The named holder answers as a replica and nobody claims: no leader.
    CHECK(!build_topology(4, {view(0, answer("replica")), view(1, answer("replica"))}, h, cluster_says("pg0")).leader);
    // Two claimants and the lock names neither: the split-brain guard.
    const auto neither = build_topology(5, {view(0, answer("master")), view(1, answer("master"))}, h, cluster_says("pg2"));
    CHECK(!neither.leader);
    CHECK(neither.split_brain());
}

TEST_CASE("a member whose host name is not resolved yet is not routed to", "[health]") {
    conf::health_config h;
    auto unresolved = view(1, replica_302);
    unresolved.host.clear();
    unresolved.address_name = "pg1.example.org";
    const auto t = build_topology(1, {view(0, leader_302), unresolved}, h);
    CHECK(t.readable.empty());
}
