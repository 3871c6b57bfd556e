// Routing classes: sync/async/any/standby_leader from Patroni's answers, the
// listener filters (tags, streaming, lag with hysteresis), fallbacks,
// balancing (roundrobin by weight, leastconn, first, prefer), a member's
// maxconn, and the idle-point drain of a member that leaves a read class.
#include "health/eligibility.hpp"
#include "health/patroni_report.hpp"
#include "proxy/balancer.hpp"
#include "proxy/books.hpp"
#include "support/proxy_harness.hpp"
#include "support/raw_client.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace patroxy;
using namespace patroxy::health;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using conf::listener_role;

namespace {

member_view member(std::size_t i, const std::string& body) {
    member_view v;
    v.id = static_cast<member_id>(i);
    v.name = "pg" + std::to_string(i);
    v.host = "127.0.0.1";
    v.port = static_cast<std::uint16_t>(15432 + i);
    v.up = true;
    v.ever_up = true;
    std::string why;
    auto r = parse_patroni(body, why);
    INFO(why);
    REQUIRE(r);
    v.report = std::move(*r);
    return v;
}

std::string replica(const std::string& extra = "") {
    return R"({"state": "running", "role": "replica", "timeline": 2)" + extra + "}";
}

const std::string leader = R"({"state": "running", "role": "master", "timeline": 2, "xlog": {"location": 1000}})";

conf::listener_config listener(const std::string& name, listener_role role) {
    conf::listener_config l;
    l.name = name;
    l.role = role;
    return l;
}

// Each call is a new check of every member (its own steady time), unless the test set one.
topology classify(std::vector<member_view> members, const std::vector<conf::listener_config>& listeners,
                  eligibility& e) {
    static auto clock = std::chrono::steady_clock::now();
    clock += 1s;
    for (auto& m : members) {
        if (m.last_check.steady_at == steady_time{}) {
            m.last_check.steady_at = clock;
        }
    }
    auto t = build_topology(1, std::move(members), {});
    e.apply(t, listeners, 2);
    return t;
}

std::vector<std::size_t> eligible(const topology& t, const std::string& name) {
    const auto* c = t.class_of(name);
    REQUIRE(c != nullptr);
    return c->eligible;
}

using set = std::vector<std::size_t>;

}  // namespace

TEST_CASE("classes from Patroni's answers: sync and quorum standbys, async, any, and a standby cluster's leader", "[routing]") {
    const std::vector<conf::listener_config> ls = {listener("w", listener_role::write), listener("r", listener_role::read),
                                                   listener("s", listener_role::sync), listener("a", listener_role::async),
                                                   listener("any", listener_role::any),
                                                   listener("sl", listener_role::standby_leader)};
    eligibility e;
    const auto t = classify({member(0, leader), member(1, replica(R"(, "sync_standby": true)")), member(2, replica()),
                             member(3, replica(R"(, "quorum_standby": true)")),
                             // Patroni never makes a nofailover member a sync standby; said so, it is not one.
                             member(4, replica(R"(, "sync_standby": true, "tags": {"nofailover": true})"))},
                            ls, e);
    CHECK(eligible(t, "w") == set{0});
    CHECK(eligible(t, "r") == set{1, 2, 3, 4});
    CHECK(eligible(t, "s") == set{1, 3});
    CHECK(eligible(t, "a") == set{2});
    CHECK(eligible(t, "any") == set{0, 1, 2, 3, 4});
    CHECK(eligible(t, "sl").empty());
    CHECK(!t.standby_cluster());

    // A standby cluster: its leader replicates from elsewhere and takes no writes.
    const auto standby = classify(
        {member(0, R"({"state": "running", "role": "standby_leader", "timeline": 2})"), member(1, replica())}, ls, e);
    CHECK(standby.standby_cluster());
    CHECK(eligible(standby, "w").empty());
    CHECK(eligible(standby, "sl") == set{0});
    CHECK(eligible(standby, "r") == set{1});
    CHECK(!standby.keeps(listener_role::write, 0));
    CHECK(standby.keeps(listener_role::standby_leader, 0));
}

TEST_CASE("replicas not streaming are kept out unless allow_archive_recovery", "[routing]") {
    auto strict = listener("r", listener_role::read);
    auto lenient = listener("r2", listener_role::read);
    lenient.allow_archive_recovery = true;
    eligibility e;
    // Patroni 3.0.4+ says it.
    auto t = classify({member(0, leader), member(1, replica(R"(, "replication_state": "streaming")")),
                       member(2, replica(R"(, "replication_state": "in archive recovery")"))},
                      {strict, lenient}, e);
    CHECK(eligible(t, "r") == set{1});
    CHECK(t.class_of("r")->why_excluded(2) == "not streaming (archive recovery)");
    CHECK(eligible(t, "r2") == set{1, 2});
    // Patroni 3.0.2 does not: the leader's replication rows tell.
    const std::string leader_302 =
        R"({"state": "running", "role": "master", "xlog": {"location": 1000},
            "replication": [{"application_name": "pg1", "state": "streaming", "sync_state": "async"}]})";
    t = classify({member(0, leader_302), member(1, replica()), member(2, replica())}, {strict}, e);
    CHECK(eligible(t, "r") == set{1});
    // A leader that lists no rows at all cannot tell them apart: both serve.
    t = classify({member(0, leader), member(1, replica()), member(2, replica())}, {strict}, e);
    CHECK(eligible(t, "r") == set{1, 2});
}

TEST_CASE("lag hysteresis over a scripted lag curve: out past max_lag, back below half after rise checks, no flap", "[routing]") {
    auto l = listener("r", listener_role::read);
    l.max_lag.bytes = 1000;
    eligibility e;
    const auto t0 = std::chrono::steady_clock::now();
    int step = 0;
    // Replay lag of pg1 at each of its checks; what the class says after each.
    const auto at = [&](std::uint64_t lag) {
        ++step;
        auto r = member(1, replica(R"(, "xlog": {"received_location": 100000, "replayed_location": )" +
                                   std::to_string(100000 - lag) + "}"));
        r.last_check.steady_at = t0 + std::chrono::seconds(step);
        auto lead = member(0, R"({"state": "running", "role": "master", "xlog": {"location": 100000}})");
        lead.last_check.steady_at = t0 + std::chrono::seconds(step);
        const auto t = classify({lead, r}, {l}, e);
        return !eligible(t, "r").empty();
    };
    CHECK(at(0));
    CHECK(at(999));       // at the limit, not past it
    CHECK(!at(1001));     // past it: out at once
    // Hovering around the limit (the flap patroni#3491 shows): stays out.
    int flips = 0;
    bool in = false;
    for (const std::uint64_t lag : {990, 1010, 990, 1010, 700, 990, 510}) {
        const bool now_in = at(lag);
        flips += now_in != in ? 1 : 0;
        in = now_in;
    }
    CHECK(flips == 0);
    CHECK(!at(400));      // below half: one good check of rise 2
    CHECK(!at(600));      // above half again: the count starts over
    CHECK(!at(400));
    CHECK(at(300));       // two in a row below half: back
    CHECK(at(900));       // under the limit: stays
}

TEST_CASE("replay delay in time: zero on an idle cluster, growing while replay is paused", "[routing]") {
    auto l = listener("r", listener_role::read);
    l.max_lag.time = 5s;
    eligibility e;
    const auto t0 = std::chrono::steady_clock::now();
    const auto at = [&](int second, std::uint64_t leader_at, std::uint64_t replayed, int replica_lags_by = 0) {
        auto lead = member(0, R"({"state": "running", "role": "master", "xlog": {"location": )" +
                                  std::to_string(leader_at) + "}}");
        auto r = member(1, replica(R"(, "xlog": {"received_location": )" + std::to_string(leader_at) +
                                   R"(, "replayed_location": )" + std::to_string(replayed) + "}"));
        lead.last_check.steady_at = t0 + std::chrono::seconds(second);
        r.last_check.steady_at = t0 + std::chrono::seconds(second - replica_lags_by);
        return classify({lead, r}, {l}, e);
    };
    // Idle for an hour, caught up: no delay (its last replayed commit may be old).
    for (int s : {0, 1800, 3600}) {
        const auto t = at(s, 1000, 1000);
        CHECK(t.members[1].replay_lag_time == 0ms);
        CHECK(eligible(t, "r") == set{1});
    }
    // The leader moves on at 3601; pg1's replay stays paused at 1000.
    CHECK(eligible(at(3601, 2000, 1000), "r") == set{1});
    CHECK(eligible(at(3605, 3000, 1000), "r") == set{1});
    const auto late = at(3607, 4000, 1000);
    CHECK(late.members[1].replay_lag_time == 6000ms);
    CHECK(eligible(late, "r").empty());
    // A replica checked before the leader's move does not count it as lag:
    // the delay is its own check time minus the leader's.
    eligibility fresh;
    const auto before_move = [&](int second, std::uint64_t leader_at, std::uint64_t replayed, int replica_at) {
        auto lead = member(0, R"({"state": "running", "role": "master", "xlog": {"location": )" +
                                  std::to_string(leader_at) + "}}");
        auto r = member(1, replica(R"(, "xlog": {"received_location": )" + std::to_string(replayed) +
                                   R"(, "replayed_location": )" + std::to_string(replayed) + "}"));
        lead.last_check.steady_at = t0 + std::chrono::seconds(second);
        r.last_check.steady_at = t0 + std::chrono::seconds(replica_at);
        return classify({lead, r}, {l}, fresh);
    };
    before_move(10, 1000, 1000, 10);
    const auto skewed = before_move(20, 9000, 1000, 12);   // pg1's answer is from 12 s, the leader moved at 20 s
    CHECK(skewed.members[1].replay_lag_time == 0ms);
    CHECK(eligible(skewed, "r") == set{1});
    // A leader whose position goes back (restored under the same name) starts the history over.
    const auto restored = before_move(30, 500, 500, 30);
    CHECK(restored.members[1].replay_lag_time == 0ms);
}

TEST_CASE("tag selectors, prefer with its fallback to others, and a fallback class", "[routing]") {
    auto local = listener("local", listener_role::read);
    local.tags = {{"dc", "a"}};
    auto prefer = listener("prefer", listener_role::read);
    prefer.prefer = {{"dc", "a"}};
    auto sync_or_read = listener("sync", listener_role::sync);
    sync_or_read.fallback = {listener_role::read, listener_role::write};
    const std::vector<conf::listener_config> ls = {local, prefer, sync_or_read};
    eligibility e;
    auto t = classify({member(0, leader), member(1, replica(R"(, "tags": {"dc": "a"})")),
                       member(2, replica(R"(, "tags": {"dc": "b"})")), member(3, replica(R"(, "tags": {"dc": "a"})"))},
                      ls, e);
    CHECK(eligible(t, "local") == set{1, 3});
    CHECK(t.class_of("local")->why_excluded(2) == "tags do not match the listener's");
    for (std::size_t turn = 0; turn < 6; ++turn) {
        const auto c = proxy::candidates(t, prefer, turn);
        REQUIRE(!c.members.empty());
        CHECK(c.members.front() != 2);  // dc a first, while it has a member
    }
    // No sync standby: the first fallback with a member, read.
    auto c = proxy::candidates(t, sync_or_read, 0);
    CHECK(c.via == 1);
    CHECK(c.members.size() == 3);
    // dc a gone: prefer takes the others; local has nobody.
    t = classify({member(0, leader), member(2, replica(R"(, "tags": {"dc": "b"})"))}, ls, e);
    CHECK(proxy::candidates(t, prefer, 0).members == set{1});   // position 1 is pg2 now
    CHECK(proxy::candidates(t, local, 0).members.empty());
    // No replica at all: sync falls through read to the leader.
    t = classify({member(0, leader)}, ls, e);
    c = proxy::candidates(t, sync_or_read, 0);
    CHECK(c.via == 2);
    CHECK(c.members == set{0});
}

TEST_CASE("balancing: roundrobin by weight, leastconn, first up to each member's maxconn", "[routing]") {
    auto rr = listener("rr", listener_role::read);
    auto lc = listener("lc", listener_role::read);
    lc.balance = conf::balance_mode::leastconn;
    auto first = listener("first", listener_role::read);
    first.balance = conf::balance_mode::first;
    eligibility e;
    std::vector<member_view> ms = {member(0, leader), member(1, replica()), member(2, replica()), member(3, replica())};
    ms[1].weight = 3;
    ms[2].weight = 1;
    ms[3].weight = 0;   // no new sessions
    ms[2].maxconn = 2;
    const auto t = classify(ms, {rr, lc, first}, e);
    CHECK(eligible(t, "rr") == set{1, 2});
    CHECK(t.class_of("rr")->why_excluded(3) == "weight 0");
    std::map<std::size_t, int> spread;
    for (std::size_t turn = 0; turn < 400; ++turn) {
        ++spread[proxy::candidates(t, rr, turn).members.front()];
    }
    CHECK(spread[1] == 300);
    CHECK(spread[2] == 100);

    std::vector<std::unique_ptr<proxy::member_book>> books;
    std::vector<proxy::member_book*> ptrs;
    for (int i = 0; i < 4; ++i) {
        books.push_back(std::make_unique<proxy::member_book>("pg" + std::to_string(i), 1));
        ptrs.push_back(books.back().get());
    }
    // leastconn: sessions per unit of weight (pg1 6/3 = 2 beats pg2's 1/1 only below 1 each).
    books[1]->routed = 6;
    books[2]->routed = 1;
    CHECK(proxy::candidates(t, lc, 0, ptrs).members == set{2, 1});
    books[1]->routed = 2;
    CHECK(proxy::candidates(t, lc, 0, ptrs).members == set{1, 2});
    // first: member order; a member at its maxconn is skipped, all full is `full`.
    books[1]->routed = 0;
    CHECK(proxy::candidates(t, first, 5, ptrs).members == set{1, 2});
    auto only2 = listener("only2", listener_role::read);
    only2.members = {"pg2"};
    const auto t2 = classify(ms, {only2}, e);
    books[2]->routed = 2;
    const auto c = proxy::candidates(t2, only2, 0, ptrs);
    CHECK(c.members.empty());
    CHECK(c.full);
    CHECK(!proxy::reserve(*books[2], 2));
    books[2]->routed = 1;
    CHECK(proxy::reserve(*books[2], 2));
    CHECK(books[2]->routed == 2);
}

TEST_CASE("a member leaving a read class for lag drains, one losing its role is cut, writes never drain", "[routing]") {
    auto r = listener("r", listener_role::read);
    r.max_lag.bytes = 100;
    const auto w = listener("w", listener_role::write);
    eligibility e;
    const auto lagging = R"(, "xlog": {"received_location": 1000, "replayed_location": 10})";
    const auto t = classify({member(0, leader), member(1, replica(lagging)), member(2, replica())}, {r, w}, e);
    CHECK(eligible(t, "r") == set{2});
    CHECK(proxy::keeps_session(t, r, listener_role::read, 1));   // still a running replica: not cut
    const auto why = proxy::drain_reason(t, r, listener_role::read, 1);
    CHECK(why.find("member pg1 left listener 'r': replay lag 990 bytes") == 0);
    CHECK(proxy::drain_reason(t, r, listener_role::read, 2).empty());
    CHECK(proxy::drain_reason(t, w, listener_role::write, 0).empty());
    // Demoted or stopped: cut, not drained.
    const auto stopped = classify({member(0, leader), member(1, R"({"state": "stopped", "role": "replica"})")}, {r, w}, e);
    CHECK(!proxy::keeps_session(stopped, r, listener_role::read, 1));
    // A listener narrowed to other members (a reload): for new sessions only, nothing drains.
    auto narrowed = r;
    narrowed.members = {"pg0", "pg2"};
    const auto n = classify({member(0, leader), member(1, replica()), member(2, replica())}, {narrowed}, e);
    CHECK(eligible(n, "r") == set{2});
    CHECK(proxy::drain_reason(n, r, listener_role::read, 1).empty());
}

// ---- in process: the daemon with stand-in members ---------------------------

TEST_CASE("a member's maxconn: a new session waits for a slot, and past wait_for_backend gets 53300", "[routing][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[1].maxconn = 1;
    cfg.timeouts.wait_for_backend = 1500ms;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    auto first = std::make_unique<raw_client>(p.port(1), 5s);
    REQUIRE(first->startup().server_name == "pg1");
    auto waiting = startup_in_background(p.port(1));
    CHECK(waiting.wait_for(500ms) == std::future_status::timeout);   // held: pg1 is full
    first.reset();                                                   // a slot frees
    REQUIRE(waiting.wait_for(3s) == std::future_status::ready);
    CHECK(waiting.get().server_name == "pg1");
    // One that never gets a slot is told so, with PostgreSQL's own code.
    raw_client holder(p.port(1), 5s);
    REQUIRE(holder.startup().server_name == "pg1");
    raw_client refused(p.port(1), 5s);
    const auto told = refused.startup();
    CHECK(told.sqlstate == "53300");
    CHECK(told.message.find("at its maxconn") != std::string::npos);
}

TEST_CASE("a replica past max_lag: its idle sessions get 57P01, one in a transaction finishes it first", "[routing][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.listeners[1].max_lag.bytes = 1000;
    cfg.timeouts.drain = 4s;
    const auto caught_up = fake_patroni::answer("replica", R"(, "replication_state": "streaming")");
    members[1]->api.set_body(caught_up);
    members[2]->api.set_body(caught_up);
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    std::vector<std::unique_ptr<raw_client>> on_pg1;
    std::unique_ptr<raw_client> on_pg2;
    for (int i = 0; i < 10 && (on_pg1.size() < 2 || !on_pg2); ++i) {
        auto c = std::make_unique<raw_client>(p.port(1), 5s);
        const auto name = c->startup().server_name;
        if (name == "pg1" && on_pg1.size() < 2) {
            on_pg1.push_back(std::move(c));
        } else if (name == "pg2" && !on_pg2) {
            on_pg2 = std::move(c);
        }
    }
    REQUIRE(on_pg1.size() == 2);
    REQUIRE(on_pg2);
    auto& idle = *on_pg1[0];
    auto& in_tx = *on_pg1[1];
    const packet begin{'Q', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'T'};   // echoed: "in a transaction block"
    const packet commit{'Q', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'I'};
    packet echoed(begin.size());
    REQUIRE(in_tx.send(begin));
    REQUIRE(in_tx.read_exact(echoed.data(), echoed.size()));
    // pg1's replay falls 5000 bytes behind the leader (location 1000 + 5000).
    members[0]->api.set_body(R"({"state": "running", "role": "master", "timeline": 3, "xlog": {"location": 6000}})");
    members[1]->api.set_body(R"({"state": "running", "role": "replica", "timeline": 3, "replication_state": "streaming",
                                 "xlog": {"received_location": 6000, "replayed_location": 1000}})");
    members[2]->api.set_body(R"({"state": "running", "role": "replica", "timeline": 3, "replication_state": "streaming",
                                 "xlog": {"received_location": 6000, "replayed_location": 6000}})");
    const auto told = idle.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.severity == "FATAL");
    CHECK(told.message.find("member pg1 left listener 'replicas': replay lag 5000 bytes") != std::string::npos);
    // The transaction goes on, and is told once it ends.
    const packet ping{'d', 0, 0, 0, 5, 'x'};
    REQUIRE(in_tx.send(ping));
    packet back(ping.size());
    REQUIRE(in_tx.read_exact(back.data(), back.size()));
    CHECK(back == ping);
    REQUIRE(in_tx.send(commit));
    REQUIRE(in_tx.read_exact(echoed.data(), echoed.size()));
    CHECK(in_tx.read_until_ready().sqlstate == "57P01");
    // pg2 keeps its session; new reads go to pg2 only.
    REQUIRE(on_pg2->send(ping));
    REQUIRE(on_pg2->read_exact(back.data(), back.size()));
    for (int i = 0; i < 3; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
    }
}

TEST_CASE("a sync listener reaches only the sync standby and follows when it changes", "[routing][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    auto sync = cfg.listeners[1];
    sync.name = "sync";
    sync.role = listener_role::sync;
    sync.port = free_port();
    cfg.listeners.push_back(sync);
    cfg.timeouts.drain = 3s;
    members[1]->api.set_body(fake_patroni::answer("replica", R"(, "sync_standby": true)"));
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] {
        const auto* c = p.topology()->class_of("sync");
        return c != nullptr && c->eligible.size() == 1;
    }));
    raw_client before(p.port(2), 5s);
    REQUIRE(before.startup().server_name == "pg1");
    for (int i = 0; i < 3; ++i) {
        raw_client c(p.port(2));
        CHECK(c.startup().server_name == "pg1");
    }
    // Patroni moves the sync role to pg2.
    members[1]->api.set_body(fake_patroni::answer("replica"));
    members[2]->api.set_body(fake_patroni::answer("replica", R"(, "sync_standby": true)"));
    REQUIRE(eventually([&] {
        const auto* c = p.topology()->class_of("sync");
        return c != nullptr && c->eligible == std::vector<std::size_t>{2};
    }));
    // The workers take the new topology a moment after the monitor built it:
    // three sessions in a row on pg2.
    CHECK(eventually([&] {
        for (int i = 0; i < 3; ++i) {
            raw_client c(p.port(2));
            if (c.startup().server_name != "pg2") {
                return false;
            }
        }
        return true;
    }, 2s));
    // The session on the old one: still a replica, so drained at its idle point, not cut.
    const auto told = before.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.message.find("no longer in class 'sync'") != std::string::npos);
}

TEST_CASE("the leader takes writes whatever its weight, and lag unknown without a leader is in", "[routing]") {
    auto w = listener("w", listener_role::write);
    auto r = listener("r", listener_role::read);
    r.max_lag.bytes = 100;
    eligibility e;
    std::vector<member_view> ms = {member(0, leader), member(1, replica(R"(, "xlog": {"received_location": 10, "replayed_location": 10})"))};
    ms[0].weight = 0;   // kept off reads, then promoted
    auto t = classify(ms, {w, r}, e);
    CHECK(eligible(t, "w") == set{0});
    CHECK(eligible(t, "r").empty());   // 990 bytes behind
    // The leader dies: the lag is unknown, and the replica serves reads again.
    t = classify({member(1, replica(R"(, "xlog": {"received_location": 10, "replayed_location": 10})"))}, {w, r}, e);
    CHECK(eligible(t, "r") == set{0});
}

TEST_CASE("a standby cluster's read port falls back to its standby leader, as read_fallback_to_leader did", "[routing]") {
    conf::config cfg;
    cfg.listeners = conf::config::default_listeners();
    cfg.health.read_fallback_to_leader = true;
    conf::inherit_health_keys(cfg);
    eligibility e;
    const auto t = classify({member(0, R"({"state": "running", "role": "standby_leader", "timeline": 2})")}, cfg.listeners, e);
    const auto c = proxy::candidates(t, cfg.listeners[1], 0);
    CHECK(c.members == set{0});
    CHECK(c.role == listener_role::standby_leader);
}

TEST_CASE("leastconn while other workers move the counts: every call returns each member once", "[routing]") {
    // 30 replicas whose session counts another thread moves during the calls,
    // as other workers' sessions do: an order read from the live counters is
    // no strict weak order, and the sort ran off its range (bench/routing_micro).
    auto lc = listener("lc", listener_role::read);
    lc.balance = conf::balance_mode::leastconn;
    eligibility e;
    std::vector<member_view> ms = {member(0, leader)};
    for (std::size_t i = 1; i <= 30; ++i) {
        ms.push_back(member(i, replica()));
        ms.back().weight = 1 + static_cast<int>(i % 3);
    }
    const auto t = classify(ms, {lc}, e);
    REQUIRE(eligible(t, "lc").size() == 30);
    std::vector<std::unique_ptr<proxy::member_book>> books;
    std::vector<proxy::member_book*> ptrs;
    for (std::size_t i = 0; i <= 30; ++i) {
        books.push_back(std::make_unique<proxy::member_book>("pg" + std::to_string(i), 1));
        ptrs.push_back(books.back().get());
    }
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        std::uint32_t x = 12345;
        while (!stop.load(std::memory_order_relaxed)) {
            x = x * 1664525 + 1013904223;
            auto& r = books[1 + x % 30]->routed;
            r.store(static_cast<int>((x >> 8) % 8), std::memory_order_relaxed);
        }
    });
    bool whole = true;
    const auto until = std::chrono::steady_clock::now() + 1500ms;
    for (std::size_t turn = 0; std::chrono::steady_clock::now() < until && turn < 5'000'000; ++turn) {
        auto got = proxy::candidates(t, lc, turn, ptrs).members;
        std::sort(got.begin(), got.end());
        whole = whole && got.size() == 30 && std::adjacent_find(got.begin(), got.end()) == got.end() &&
                got.front() == 1 && got.back() == 30;
    }
    stop = true;
    churn.join();
    CHECK(whole);
}
