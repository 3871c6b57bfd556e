// Component tests: which member a session goes to, and when it waits or is refused
// (the real proxy and monitor in process; tests/support/proxy_harness.hpp).

#include "support/proxy_harness.hpp"

#include "protocol/error_response.hpp"

#include <catch2/catch.hpp>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using role = conf::listener_role;

TEST_CASE("the write port reaches the leader and the read port round-robins over replicas", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    {
        // Two at once, then two more: the counters sum over both workers.
        raw_client a(p.port(0));
        raw_client b(p.port(0));
        CHECK(a.startup().server_name == "pg0");
        CHECK(b.startup().server_name == "pg0");
    }
    // close() drops `current` first and the server-wide count last: wait for the latter.
    REQUIRE(eventually([&] { return p.server().connections() == 0; }));
    for (int i = 0; i < 2; ++i) {
        raw_client c(p.port(0));
        CHECK(c.startup().server_name == "pg0");
    }
    REQUIRE(eventually([&] { return p.server().connections() == 0; }));
    const auto totals = p.server().totals();
    CHECK(totals.at("master").accepted == 4);
    CHECK(totals.at("master").members.at("pg0").total == 4);
    CHECK(totals.at("master").members.at("pg0").peak == 2);
    CHECK(totals.at("master").peak == 2);
    CHECK(totals.at("master").closed[static_cast<std::size_t>(proxy::close_reason::done)] == 4);
    CHECK(totals.at("master").bytes_in > 0);
    // Strictly in turn, across both workers.
    std::vector<std::string> order;
    for (int i = 0; i < 8; ++i) {
        raw_client c(p.port(1));
        order.push_back(c.startup().server_name);
    }
    for (std::size_t i = 0; i < order.size(); ++i) {
        CHECK((order[i] == "pg1" || order[i] == "pg2"));
        if (i > 0) {
            CHECK(order[i] != order[i - 1]);
        }
    }
}

TEST_CASE("a leader change moves new write sessions and cuts the old ones", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    raw_client old_session(p.port(0), 3s);
    REQUIRE(old_session.startup().server_name == "pg0");
    // Patroni's switchover: the old leader says replica first, then the new one leads.
    members[0]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(p.wait_for_leader(std::nullopt));
    CHECK(old_session.closed_by_peer());  // shutdown-sessions, without waiting for fall
    members[1]->api.set_body(fake_patroni::answer("master"));
    REQUIRE(p.wait_for_leader(1u));
    raw_client fresh(p.port(0));
    CHECK(fresh.startup().server_name == "pg1");
}

TEST_CASE("a read session on a replica promoted to leader is cut, unless reads fall back to the leader", "[proxy][component]") {
    for (const bool fallback : {false, true}) {
        auto members = cluster({"master", "replica"});
        auto cfg = config_for(members);
        cfg.health.read_fallback_to_leader = fallback;
        proxy_under_test p(cfg);
        REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
        raw_client reader(p.port(1), 2s);
        REQUIRE(reader.startup().server_name == "pg1");
        // Promoted in place (no restart of its PostgreSQL), after the old
        // leader stepped down (no double claim in between).
        members[0]->api.set_body(fake_patroni::answer("replica"));
        REQUIRE(p.wait_for_leader(std::nullopt));
        members[1]->api.set_body(fake_patroni::answer("master"));
        REQUIRE(p.wait_for_leader(1u));
        INFO("read_fallback_to_leader: " << fallback);
        if (fallback) {
            const packet ping{'x'};
            CHECK(reader.send(ping));
            CHECK(reader.read_byte() == std::uint8_t{'x'});  // it may stay: reads may use the leader
        } else {
            CHECK(reader.closed_by_peer());  // a read pool must not quietly move onto the new primary
        }
    }
}

TEST_CASE("a client with no leader is held and routed as soon as one appears", "[proxy][component]") {
    auto members = cluster({"replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return p.server().session_count() == 1; }));
    std::this_thread::sleep_for(300ms);  // the client is waiting, held
    CHECK(outcome.wait_for(0s) == std::future_status::timeout);
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("bytes a held client sends after its startup reach the member once one is routed", "[proxy][component]") {
    // The session reads nothing while it waits: what the client sends then is
    // reported once, and must be read when relaying begins.
    auto members = cluster({"replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    raw_client c(p.port(0));
    REQUIRE(c.send(make_startup({{"user", "tester"}, {"database", "db"}})));
    REQUIRE(eventually([&] { return p.server().totals()["master"].held == 1; }));
    const packet query = {'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0};
    REQUIRE(c.send(query));
    std::this_thread::sleep_for(200ms);  // the bytes arrive while the session holds
    members[0]->api.set_body(fake_patroni::answer("master"));
    const auto r = c.read_until_ready();
    REQUIRE(r.ready);
    packet echoed(query.size());
    REQUIRE(c.read_exact(echoed.data(), echoed.size()));  // the stand-in echoes after ReadyForQuery
    CHECK(echoed == query);
}

TEST_CASE("a held client gets FATAL 57P03 naming the listener when no leader comes", "[proxy][component]") {
    auto members = cluster({"replica"});
    auto cfg = config_for(members);
    cfg.timeouts.wait_for_backend = 300ms;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    SECTION("plaintext") {
        raw_client c(p.port(0));
        const auto r = c.startup();
        CHECK(r.severity == "FATAL");
        CHECK(r.sqlstate == "57P03");
        CHECK(r.message == "patroxy: no leader available for listener 'master' after waiting 300ms");
        CHECK(c.closed_by_peer());
    }
    SECTION("after an SSLRequest the client is told 'N' first, then the error") {
        raw_client c(p.port(0));
        c.send(make_code_packet(protocol::ssl_request_code));
        CHECK(c.read_byte() == std::uint8_t{'N'});
        const auto r = c.startup();
        CHECK(r.sqlstate == "57P03");
    }
}

TEST_CASE("past maxconn a client gets 53300", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.listeners[0].maxconn = 1;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client first(p.port(0));
    REQUIRE(first.startup().ready);
    raw_client second(p.port(0));
    const auto r = second.startup();
    CHECK(r.sqlstate == "53300");
    CHECK(r.message == "patroxy: too many connections on listener 'master' (maxconn 1)");
}

TEST_CASE("two members claiming leadership route writes to none", "[proxy][component]") {
    auto members = cluster({"master", "master"});
    auto cfg = config_for(members);
    cfg.timeouts.wait_for_backend = 200ms;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->split_brain(); }));
    CHECK(!p.topology()->leader);
    raw_client c(p.port(0));
    CHECK(c.startup().sqlstate == "57P03");
    members[1]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(p.wait_for_leader(0u));
}

TEST_CASE("hung and garbage-speaking APIs go DOWN after fall checks while the others are polled on time", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.health.fall = 2;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    const auto t0 = std::chrono::steady_clock::now();
    members[1]->api.set_mode(fake_patroni::mode::hang);
    members[2]->api.set_mode(fake_patroni::mode::garbage);
    REQUIRE(eventually([&] {
        const auto t = p.topology();
        return !t->members[1].up && !t->members[2].up;
    }));
    const auto t = p.topology();
    CHECK(t->members[1].last_check.error == "answer: timed out");
    CHECK(t->members[2].last_check.error == "HTTP 200: body is not valid JSON");
    CHECK(t->members[2].last_check.http_status == 200);
    CHECK(t->readable.empty());
    // The leader's checks kept their pace while the others hung: no gap
    // longer than the 200 ms interval plus generous scheduling slack (a check
    // held behind the hung one for its 300 ms timeout shows 500 ms or more).
    std::this_thread::sleep_for(500ms);
    std::vector<std::chrono::steady_clock::time_point> polls;
    for (auto at : members[0]->api.requests()) {
        if (at >= t0) {
            polls.push_back(at);
        }
    }
    REQUIRE(polls.size() >= 4);
    for (std::size_t i = 1; i < polls.size(); ++i) {
        CHECK(polls[i] - polls[i - 1] < 450ms);
    }
    raw_client c(p.port(0));
    CHECK(c.startup().server_name == "pg0");  // routing goes on
}

TEST_CASE("reads skip lagging and noloadbalance replicas, and 'primary' leads like 'master'", "[proxy][component]") {
    auto members = cluster({"primary", "replica", "replica", "replica"});
    members[0]->api.set_body(R"({"state": "running", "role": "primary", "xlog": {"location": 5000000}})");
    members[1]->api.set_body(R"({"state": "running", "role": "replica", "xlog": {"received_location": 1000}})");
    members[2]->api.set_body(R"({"state": "running", "role": "replica", "tags": {"noloadbalance": true},
                                 "xlog": {"received_location": 5000000}})");
    members[3]->api.set_body(R"({"state": "running", "role": "replica", "xlog": {"received_location": 4999000}})");
    auto cfg = config_for(members);
    cfg.health.max_lag_bytes = 16 * 1024;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->members[3].lag_bytes.has_value(); }));
    CHECK(p.topology()->readable == std::vector<std::size_t>{3});
    CHECK(p.topology()->members[1].lag_bytes == 4999000u);
    // The workers take the new topology a moment after the monitor built it:
    // three sessions in a row on pg3 (round robin over two would alternate).
    CHECK(eventually([&] {
        for (int i = 0; i < 3; ++i) {
            raw_client c(p.port(1));
            if (c.startup().server_name != "pg3") {
                return false;
            }
        }
        return true;
    }, 2s));
    raw_client w(p.port(0));
    CHECK(w.startup().server_name == "pg0");
}

TEST_CASE("the workers describe every open session with its user and database and application_name", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    raw_client writer(p.port(0));
    REQUIRE(writer.send(make_startup({{"user", "alice"}, {"database", "orders"}, {"application_name", "billing"}})));
    REQUIRE(writer.read_until_ready().ready);
    raw_client reader(p.port(1));
    REQUIRE(reader.send(make_startup({{"user", "bob"}, {"database", "reports"}})));
    REQUIRE(reader.read_until_ready().ready);
    raw_client silent(p.port(1));  // connected, no first packet yet

    // Asks the way the stats server does: callbacks come back on our io_context.
    auto describe = [&](std::size_t limit) {
        boost::asio::io_context here;
        std::vector<proxy::session_view> got;
        bool answered = false;
        auto busy = boost::asio::make_work_guard(here);
        p.server().describe_sessions(limit, here.get_executor(), [&](std::vector<proxy::session_view> v) {
            got = std::move(v);
            answered = true;
            busy.reset();
        });
        here.run_for(3s);
        CHECK(answered);
        return got;
    };
    std::vector<proxy::session_view> views;
    REQUIRE(eventually([&] { return (views = describe(10)).size() == 3; }));
    // Oldest first.
    CHECK(views[0].user == "alice");
    CHECK(views[0].database == "orders");
    CHECK(views[0].application_name == "billing");
    CHECK(views[0].listener == "master");
    CHECK(views[0].member == "pg0");
    CHECK(views[0].state == "active");
    CHECK(views[0].bytes_in > 0);
    CHECK(views[0].bytes_out > 0);
    CHECK(views[1].user == "bob");
    CHECK(views[1].listener == "replicas");
    CHECK((views[1].member == "pg1" || views[1].member == "pg2"));
    CHECK(views[2].state == "startup");
    CHECK(views[2].user.empty());
    CHECK(views[0].age_seconds >= views[1].age_seconds);
    // The limit keeps the longest-running.
    const auto one = describe(1);
    REQUIRE(one.size() == 1);
    CHECK(one[0].user == "alice");
}

TEST_CASE("the session list keeps at most 63 bytes of each name a client chose", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0));
    // Startup parameters of ~3 KB each (the packet's limit is 10000 bytes):
    // forwarded whole, shown and logged as PostgreSQL would name them.
    const std::string user(3000, 'u');
    const std::string database = std::string(62, 'd') + "\xc3\xa9" + std::string(3000, 'd');  // U+00E9 at 62-63
    const std::string app(3000, 'a');
    raw_client c(p.port(0));
    REQUIRE(c.send(make_startup({{"user", user}, {"database", database}, {"application_name", app}})));
    REQUIRE(c.read_until_ready().ready);
    boost::asio::io_context here;
    std::vector<proxy::session_view> got;
    auto busy = boost::asio::make_work_guard(here);
    p.server().describe_sessions(10, here.get_executor(), [&](std::vector<proxy::session_view> v) {
        got = std::move(v);
        busy.reset();
    });
    here.run_for(3s);
    REQUIRE(got.size() == 1);
    CHECK(got[0].user == std::string(63, 'u'));
    CHECK(got[0].database == std::string(62, 'd'));  // not half of the character
    CHECK(got[0].application_name == std::string(63, 'a'));
    CHECK(got[0].bytes_in >= user.size() + database.size() + app.size());  // the member got it all
}

TEST_CASE("a refused connect to the leader makes the monitor look now, not at its next regular check", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();  // the leader's PostgreSQL is gone; its Patroni has not said so yet
    cfg.health.interval = 20s;          // regular checks alone would not notice within the test
    cfg.health.fast_interval = 100ms;
    cfg.timeouts.wait_for_backend = 3s;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    // Until rise/fall settle, members are checked at fast_interval anyway:
    // wait for both to be on their regular (20 s) pace.
    const auto settled = [&] {
        const auto a = members[0]->api.requests().size() + members[1]->api.requests().size();
        std::this_thread::sleep_for(400ms);
        return members[0]->api.requests().size() + members[1]->api.requests().size() == a;
    };
    REQUIRE(eventually(settled, 5s));
    const auto checks_before = members[1]->api.requests().size();
    // A switchover happens: pg1 now leads. Only a check can tell patroxy.
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    const auto t0 = std::chrono::steady_clock::now();
    raw_client c(p.port(0));
    const auto r = c.startup();
    CHECK(r.ready);
    CHECK(r.server_name == "pg1");
    CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
    CHECK(members[1]->api.requests().size() > checks_before);  // pg1 was asked because pg0 failed
}

TEST_CASE("a session whose member loses the leader role before answering waits for the next leader", "[proxy][component]") {
    silent_listener silent(16);  // pg0 takes connections and never answers, as while it is demoted
    auto members = cluster({"master", "replica"});
    proxy_under_test p(config_with_postgres_at(members, 0, silent.port()));
    REQUIRE(p.wait_for_leader(0));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return p.server().totals()["master"].members["pg0"].current == 1; }));  // relaying, unanswered
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
    CHECK(p.server().totals()["master"].closed[static_cast<std::size_t>(proxy::close_reason::backend_down)] == 0);
}
