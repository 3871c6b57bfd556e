// Component tests: a session's bytes, cancels and timeouts, and members that fail it
// (the real proxy and monitor in process; tests/support/proxy_harness.hpp).

#include "support/proxy_harness.hpp"

#include "support/hostile_peers.hpp"

#include "protocol/error_response.hpp"

#include <catch2/catch.hpp>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using role = conf::listener_role;

TEST_CASE("a client that sends more than a read's worth right behind its startup has all of it relayed", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0));
    raw_client c(p.port(0));
    auto bytes = make_startup({{"user", "tester"}, {"database", "db"}});
    const auto startup_size = bytes.size();
    for (std::size_t i = 0; i < 3000; ++i) {
        bytes.push_back(static_cast<std::uint8_t>(i % 251));
    }
    REQUIRE(c.send(bytes));  // one write: the proxy's first read takes only part of it
    REQUIRE(c.read_until_ready().ready);
    packet echoed(bytes.size() - startup_size);
    REQUIRE(c.read_exact(echoed.data(), echoed.size()));
    CHECK(std::equal(echoed.begin(), echoed.end(), bytes.begin() + static_cast<std::ptrdiff_t>(startup_size)));
}

TEST_CASE("a refused connect moves a read session to the next replica", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.members[1].port = free_port();  // nothing listens there
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    for (int i = 0; i < 4; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
    }
}

TEST_CASE("a malformed first packet closes only its own session", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    raw_client good(p.port(0));
    REQUIRE(good.startup().ready);
    for (std::uint32_t len : {0u, 4u, 7u, 10001u, 0x80000000u}) {
        raw_client bad(p.port(0));
        packet p4;
        put_u32(p4, len);
        put_u32(p4, 196608);
        bad.send(p4);
        CHECK(bad.closed_by_peer());
    }
    raw_client injected(p.port(0));
    auto ssl = make_code_packet(protocol::ssl_request_code);
    ssl.push_back('Q');
    injected.send(ssl);
    CHECK(injected.closed_by_peer());
    // The good session still echoes.
    const packet ping{'x', 'y'};
    REQUIRE(good.send(ping));
    CHECK(good.read_byte() == std::uint8_t{'x'});
}

TEST_CASE("a CancelRequest goes only to the member that issued the key while its session lives", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    std::optional<raw_client> session(std::in_place, p.port(1));
    const auto r = session->startup();
    REQUIRE(r.ready);
    REQUIRE(!r.key_secret.empty());
    const auto owner = std::stoi(r.server_name.substr(2));
    const auto other = owner == 1 ? 2 : 1;
    REQUIRE(eventually([&] { return p.server().known_cancel_keys() == 1; }));
    {
        raw_client cancel(p.port(0));  // on the write port: the key still finds its replica
        cancel.send(make_cancel(r.key_pid, r.key_secret));
        CHECK(cancel.closed_by_peer());
    }
    CHECK(eventually([&] { return members[owner]->pg->cancels().size() == 1; }));
    const protocol::cancel_key key{r.key_pid, r.key_secret};
    CHECK(members[owner]->pg->cancels().front() == key);
    std::this_thread::sleep_for(100ms);
    CHECK(members[other]->pg->cancels().empty());
    CHECK(members[0]->pg->cancels().empty());
    // Once the session ends its key is forgotten: a cancel with it fans out
    // to every replica the read port could have used.
    session.reset();
    REQUIRE(eventually([&] { return p.server().known_cancel_keys() == 0; }));
    {
        raw_client cancel(p.port(1));
        cancel.send(make_cancel(r.key_pid, r.key_secret));
        CHECK(cancel.closed_by_peer());
    }
    CHECK(eventually([&] { return members[owner]->pg->cancels().size() == 2 && members[other]->pg->cancels().size() == 1; }));
    CHECK(members[other]->pg->cancels().front() == key);
}

TEST_CASE("a CancelRequest with an unknown key on the read port reaches every replica", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    raw_client c(p.port(1));
    c.send(make_cancel(4242, {9, 9, 9, 9}));
    CHECK(c.closed_by_peer());
    const protocol::cancel_key key{4242, {9, 9, 9, 9}};
    CHECK(eventually([&] { return members[1]->pg->cancels().size() == 1 && members[2]->pg->cancels().size() == 1; }));
    CHECK(members[1]->pg->cancels().front() == key);
    CHECK(members[2]->pg->cancels().front() == key);
    // Not the leader: a read session on a replica that is promoted is cut
    // (reads do not fall back to the leader here), so no read key is its.
    std::this_thread::sleep_for(100ms);
    CHECK(members[0]->pg->cancels().empty());
}

TEST_CASE("a leader that refuses connects holds the client until the next leader takes it", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();  // the leader's PostgreSQL is stopping: refused
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    auto outcome = startup_in_background(p.port(0));
    std::this_thread::sleep_for(500ms);
    CHECK(outcome.wait_for(0s) == std::future_status::timeout);  // held, not refused
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("a leader that keeps refusing gets the client a 57P03 naming the failure", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();
    cfg.timeouts.wait_for_backend = 600ms;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client c(p.port(0));
    const auto r = c.startup();
    CHECK(r.sqlstate == "57P03");
    CHECK(r.message == "patroxy: could not connect to a member for listener 'master' (pg0: Connection refused)");
}

TEST_CASE("a member that closes before answering the startup is retried like a failed connect", "[proxy][component]") {
    stopping_postgres closer;  // closes without a word
    auto members = cluster({"replica", "replica"});
    proxy_under_test p(config_with_postgres_at(members, 0, closer.port()));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    for (int i = 0; i < 4; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg1");
    }
    CHECK(closer.answered() >= 2);
}

TEST_CASE("a member answering FATAL 57P03 (shutting down) holds the client for the next leader", "[proxy][component]") {
    // What PostgreSQL says while it stops, before Patroni reports the demotion.
    std::vector<std::uint8_t> fatal;
    protocol::encode_error_response(fatal, protocol::severity::fatal, "57P03", "the database system is shutting down");
    stopping_postgres stopping(fatal);
    auto members = cluster({"master", "replica"});
    proxy_under_test p(config_with_postgres_at(members, 0, stopping.port()));
    REQUIRE(p.wait_for_leader(0u));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return stopping.answered() >= 1; }));
    CHECK(outcome.wait_for(300ms) == std::future_status::timeout);  // held, not shown the FATAL
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("4 MiB each way arrive whole and in order when the client reads late", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0));
    raw_client c(p.port(0));
    REQUIRE(c.startup().ready);
    // Echoed back by the stand-in. The reader starts late, so every buffer on
    // the way fills and patroxy must wait for the client (partial writes).
    packet out(4 * 1024 * 1024);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::uint8_t>(i % 251);
    }
    auto sent = std::async(std::launch::async, [&] { return c.send(out); });
    std::this_thread::sleep_for(300ms);  // let the buffers fill: what this test is about
    packet in(out.size());
    REQUIRE(c.read_exact(in.data(), in.size()));
    CHECK(sent.get());
    CHECK(in == out);
    // A worker counts a write once send() returns, which may be just after
    // the client has read the last byte: the books catch up within moments.
    CHECK(eventually([&] {
        const auto totals = p.server().totals();
        return totals.at("master").bytes_in >= out.size() && totals.at("master").bytes_out >= out.size();
    }));
}

TEST_CASE("a member's FATAL and close reach the client as the error, then the end of the connection", "[proxy][component]") {
    // pg_terminate_backend or idle_session_timeout: the error and the FIN
    // leave PostgreSQL together, so patroxy may see both in one event.
    auto answer = trust_answer();
    protocol::encode_error_response(answer, protocol::severity::fatal, "57P01",
                                    "terminating connection due to administrator command");
    stopping_postgres terminating(answer);
    auto members = cluster({"master"});
    proxy_under_test p(config_with_postgres_at(members, 0, terminating.port()));
    REQUIRE(p.wait_for_leader(0u));
    for (int i = 0; i < 5; ++i) {
        raw_client c(p.port(0), 2s);
        REQUIRE(c.startup().ready);
        const auto after = c.read_until_ready();
        CHECK(after.sqlstate == "57P01");
        CHECK(c.closed_by_peer());
    }
}

TEST_CASE("a member that sends its last bytes and closes while the client reads late: every byte, then the end", "[proxy][component]") {
    auto answer = trust_answer();
    const std::size_t tail = 1024 * 1024;
    for (std::size_t i = 0; i < tail; ++i) {
        answer.push_back(static_cast<std::uint8_t>(i % 251));
    }
    stopping_postgres finishing(answer);
    auto members = cluster({"master"});
    proxy_under_test p(config_with_postgres_at(members, 0, finishing.port()));
    REQUIRE(p.wait_for_leader(0u));
    raw_client c(p.port(0), 2s);
    REQUIRE(c.send(make_startup({{"user", "tester"}, {"database", "db"}})));
    // Patroxy has to wait for the client while the member's last bytes and
    // its FIN arrive: the FIN's event comes while it cannot read.
    std::this_thread::sleep_for(300ms);
    REQUIRE(c.read_until_ready().ready);
    packet in(tail);
    REQUIRE(c.read_exact(in.data(), in.size()));
    CHECK(in[tail - 1] == static_cast<std::uint8_t>((tail - 1) % 251));
    CHECK(c.closed_by_peer());
}

TEST_CASE("a connect that gets no answer times out and the session moves to the next replica", "[proxy][component]") {
    silent_listener silent(0);
    raw_client filler(silent.port());  // takes the one slot in its accept queue: connects hang now
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_with_postgres_at(members, 1, silent.port()));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    // Round robin sends at least one of the two to the silent member first.
    bool waited_for_timeout = false;
    for (int i = 0; i < 2; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
        const auto took = std::chrono::steady_clock::now() - t0;
        CHECK(took < 3s);  // one connect timeout (1 s), with room for a loaded host
        waited_for_timeout = waited_for_timeout || took >= 900ms;
    }
    CHECK(waited_for_timeout);
    CHECK(p.server().totals()["replicas"].members["pg1"].connect_errors >= 1);
}

TEST_CASE("an idle session is closed at client_idle and a talking one is not", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.timeouts.client_idle = 1s;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    raw_client talking(p.port(0));
    REQUIRE(talking.startup().ready);
    raw_client idle(p.port(0), 3s);
    REQUIRE(idle.startup().ready);
    const auto t0 = std::chrono::steady_clock::now();
    const packet ping{'x', 'y'};
    for (int i = 0; i < 15; ++i) {  // 1.5 s of traffic, a message every 100 ms
        REQUIRE(talking.send(ping));
        std::uint8_t back[2];
        REQUIRE(talking.read_exact(back, 2));
        std::this_thread::sleep_for(100ms);
    }
    CHECK(idle.closed_by_peer());
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    REQUIRE(talking.send(ping));
    std::uint8_t back[2];
    CHECK(talking.read_exact(back, 2));
    REQUIRE(eventually([&] {
        return p.server().totals()["master"].closed[static_cast<std::size_t>(proxy::close_reason::client_timeout)] == 1;
    }));
}

TEST_CASE("bytes sent after SSLRequest in a later write, before the member answers, close the session unrelayed", "[proxy][component]") {
    auto members = cluster({"master"});
    scripted_postgres late_answer(2s, {'N'});
    proxy_under_test p(config_with_postgres_at(members, 0, late_answer.port()));
    REQUIRE(p.wait_for_leader(0u));
    raw_client c(p.port(0));
    REQUIRE(c.send(make_code_packet(protocol::ssl_request_code)));
    REQUIRE(eventually([&] { return late_answer.connections() == 1; }));
    std::this_thread::sleep_for(50ms);  // forwarded; the answer is about 2 s away
    c.send({'Q', 0, 0, 0, 5, 'x'});
    CHECK(c.closed_by_peer());
    std::this_thread::sleep_for(400ms);
    CHECK(late_answer.received_after_first().empty());
}

TEST_CASE("sessions with no member yet when a handover or a drain begins: a handover and an upgrade's drain serve them, a shutdown's refuses them with 57P03", "[proxy][component]") {
    auto members = cluster({"replica", "replica"});  // no leader yet: a writer is held
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    auto held = startup_in_background(p.port(0));
    raw_client quiet(p.port(1));  // accepted, its startup not sent yet
    REQUIRE(eventually([&] { return p.server().session_count() == 2; }));
    const auto drain = [&](const char* why, bool shutdown) {
        REQUIRE(p.daemon().on_control([&] {
            if (shutdown) {
                p.server().stop_accepting();
            } else {
                p.server().pause_for_handover();  // as the old process does once the next one took the sockets
            }
            p.server().drain({why, 0ms, std::chrono::steady_clock::now() + 10s, {}, shutdown});
        }));
        std::this_thread::sleep_for(100ms);
    };
    SECTION("a handover in progress stops accepting only; once it fails, accepting again") {
        REQUIRE(p.daemon().on_control([&] { p.server().pause_for_handover(); }));
        std::this_thread::sleep_for(100ms);  // the workers have stopped accepting
        const auto r = quiet.startup();
        CHECK(r.ready);
        CHECK(r.sqlstate.empty());
        members[0]->api.set_body(fake_patroni::answer("master"));
        check_routed_to(held, "pg0");
        REQUIRE(p.daemon().on_control([&] { p.server().resume_after_handover(); }));
        raw_client fresh(p.port(0));
        CHECK(fresh.startup().ready);
    }
    SECTION("an upgrade: a login in progress and a held one get their transaction") {
        drain("patroxy is upgrading", false);
        const auto r = quiet.startup();
        CHECK(r.ready);
        CHECK(r.sqlstate.empty());
        members[0]->api.set_body(fake_patroni::answer("master"));
        check_routed_to(held, "pg0");
    }
    SECTION("a shutdown: both are told 57P03") {
        drain("patroxy is shutting down", true);
        const auto r = quiet.startup();
        CHECK_FALSE(r.ready);
        CHECK(r.sqlstate == "57P03");
        REQUIRE(held.wait_for(3s) == std::future_status::ready);
        CHECK(held.get().sqlstate == "57P03");
    }
}
