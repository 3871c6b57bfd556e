// Component tests: configuration as a snapshot. Reloads keep counters,
// sockets and sessions; sessions keep the settings they started with; a
// removed member's sessions drain where they are idle (the real daemon in
// process against stand-in members; tests/support/proxy_harness.hpp).

#include "support/proxy_harness.hpp"

#include "conf/loader.hpp"
#include "protocol/error_response.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

// The stand-in echoes what it gets: a Query and a ReadyForQuery a client
// sends come back as the member's answer to that Query, which is how these
// tests put a session in or out of a transaction block. (A ReadyForQuery
// that no Query asked for would make patroxy stop trusting the stream.)
packet query_answered(char status) {
    return {'Q', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, static_cast<std::uint8_t>(status)};
}

// The inode of the socket listening on 127.0.0.1:`port` (/proc/net/tcp), 0 when none.
unsigned long listening_inode(std::uint16_t port) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    std::getline(in, line);
    char want[16];
    std::snprintf(want, sizeof want, ":%04X", port);
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string slot, local, remote, state, queues, timer, retr, uid, timeout;
        unsigned long inode = 0;
        fields >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
        if (state == "0A" && local.size() > 5 && local.substr(local.size() - 5) == want) {
            return inode;
        }
    }
    return 0;
}

const proxy::member_totals& member_totals(proxy_under_test& p, const std::string& listener, const std::string& member) {
    static proxy::member_totals none;
    static thread_local std::map<std::string, proxy::listener_totals> all;
    all = p.server().totals();
    const auto l = all.find(listener);
    if (l == all.end()) {
        return none;
    }
    const auto m = l->second.members.find(member);
    return m == l->second.members.end() ? none : m->second;
}

}  // namespace

TEST_CASE("a reload that keeps a member keeps its counters, its sessions and the listener's very socket", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    std::vector<std::unique_ptr<raw_client>> before;
    for (int i = 0; i < 3; ++i) {
        before.push_back(std::make_unique<raw_client>(p.port(0)));
        REQUIRE(before.back()->startup().ready);
    }
    const auto socket_before = listening_inode(p.port(0));
    REQUIRE(socket_before != 0);
    REQUIRE(eventually([&] { return member_totals(p, "master", "pg0").total == 3; }));

    auto next = p.config();
    next.health.interval = 300ms;
    next.timeouts.client_idle = 2h;
    conf::listener_config extra;
    extra.name = "extra";
    extra.role = conf::listener_role::read;
    extra.bind = "127.0.0.1";
    extra.port = free_port();
    next.listeners.push_back(extra);
    const auto r = p.reload(next);
    INFO(r.errors.size());
    REQUIRE(r.applied);
    CHECK(p.config().generation == 2);
    CHECK(listening_inode(p.port(0)) == socket_before);  // the very socket
    {
        raw_client on_new(extra.port);
        CHECK(on_new.startup().server_name == "pg1");
    }
    for (int i = 0; i < 2; ++i) {
        raw_client c(p.port(0));
        REQUIRE(c.startup().ready);
    }
    CHECK(eventually([&] { return member_totals(p, "master", "pg0").total == 5; }));
    for (auto& c : before) {  // untouched
        const packet ping{'x'};
        CHECK(c->send(ping));
        CHECK(c->read_byte() == std::uint8_t{'x'});
    }
    // And a reload that removes the listener closes its socket at once.
    next.listeners.pop_back();
    REQUIRE(p.reload(next).applied);
    CHECK(eventually([&] { return listening_inode(extra.port) == 0; }, 2s));
}

TEST_CASE("a session started before a reload keeps its timeouts, one after gets the new ones", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.timeouts.client_idle = 1s;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client old_one(p.port(0), 5s);
    REQUIRE(old_one.startup().ready);
    auto next = p.config();
    next.timeouts.client_idle = 1h;
    REQUIRE(p.reload(next).applied);
    raw_client new_one(p.port(0), 5s);
    REQUIRE(new_one.startup().ready);
    std::this_thread::sleep_for(1500ms);
    CHECK(old_one.closed_by_peer());    // 1 s, as when it started
    const packet ping{'x'};
    CHECK(new_one.send(ping));
    CHECK(new_one.read_byte() == std::uint8_t{'x'});  // an hour now
}

TEST_CASE("a member removed by a reload: idle sessions get 57P01, one in a transaction finishes it first", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.timeouts.drain = 4s;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    // Sessions on pg1 (the read port alternates; keep those that land there).
    std::vector<std::unique_ptr<raw_client>> on_pg1;
    for (int i = 0; i < 8 && on_pg1.size() < 3; ++i) {
        auto c = std::make_unique<raw_client>(p.port(1), 5s);
        if (c->startup().server_name == "pg1") {
            on_pg1.push_back(std::move(c));
        }
    }
    REQUIRE(on_pg1.size() == 3);
    auto& idle = *on_pg1[0];
    auto& in_tx = *on_pg1[1];
    auto& stuck = *on_pg1[2];
    REQUIRE(in_tx.send(query_answered('T')));  // echoed: pg1 says "in a transaction block"
    REQUIRE(stuck.send(query_answered('T')));
    packet echoed(query_answered('T').size());
    REQUIRE(in_tx.read_exact(echoed.data(), echoed.size()));
    REQUIRE(stuck.read_exact(echoed.data(), echoed.size()));

    auto next = p.config();
    next.members.erase(next.members.begin() + 1);  // pg1
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(p.reload(next).applied);
    // The idle one: FATAL 57P01 naming the reason, within the drain's spread (+1 s for a fresh session).
    const auto told = idle.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.severity == "FATAL");
    CHECK(told.message == "terminating connection: patroxy: a reload removed member 'pg1'");
    CHECK(idle.closed_by_peer());
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    // The one in a transaction is left alone until it ends it ... (a whole
    // message each way: patroxy follows the framing)
    const packet ping{'d', 0, 0, 0, 5, 'x'};
    REQUIRE(in_tx.send(ping));
    packet back(ping.size());
    REQUIRE(in_tx.read_exact(back.data(), back.size()));
    CHECK(back == ping);
    REQUIRE(in_tx.send(query_answered('I')));  // COMMIT and its answer, as it were
    REQUIRE(in_tx.read_exact(echoed.data(), echoed.size()));
    const auto after_commit = in_tx.read_until_ready();
    CHECK(after_commit.sqlstate == "57P01");
    // ... and the one that never ends it is cut at the drain's deadline.
    CHECK(stuck.closed_by_peer());  // 5 s receive timeout > drain 4 s
    CHECK(std::chrono::steady_clock::now() - t0 < 5500ms);
    // Sessions elsewhere are untouched and new ones avoid pg1.
    for (int i = 0; i < 3; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
    }
}

TEST_CASE("a reload's drain comes with its routing: a session routed in between is drained, not cut", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.timeouts.drain = 6s;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    // What daemon::apply hands the server for a reload that removes pg1 ...
    REQUIRE(p.daemon().on_control([&] {
        proxy::drain_order order;
        order.spread = 0ms;
        order.deadline = std::chrono::steady_clock::now() + 6s;
        order.reason = [](const proxy::session& s) {
            return s.member_name() == "pg1" ? std::string("a reload removed member 'pg1'") : std::string();
        };
        p.server().drain_with_next_routing(std::move(order));
    }));
    // ... a session routed to pg1 by the routing still in force ...
    raw_client c(p.port(1), 5s);
    REQUIRE(c.startup().server_name == "pg1");
    // ... and then the routing without pg1 (the monitor's topology after the reload).
    auto without = std::make_shared<health::topology>(*p.topology());
    without->members.erase(without->members.begin() + 1);
    without->readable.clear();
    REQUIRE(p.daemon().on_control([&] { p.server().publish(without); }));
    // Drained at its idle point (after the fresh-session grace), not cut as a member that lost its role.
    const auto told = c.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.message == "terminating connection: patroxy: a reload removed member 'pg1'");
}

TEST_CASE("a reload with a syntax or a semantic error changes nothing and says where", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    const auto path = "/tmp/patroxy-reload-test-" + std::to_string(::getpid()) + ".yml";
    cfg.source = path;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    std::ofstream(path) << "members: [\n";  // a syntax error
    p.daemon().request_reload();
    REQUIRE(eventually([&] { return p.daemon().reloads().failed_total == 1; }));
    auto r = p.daemon().reloads();
    CHECK(r.last_result == "failed");
    REQUIRE(r.last_errors.size() == 1);
    CHECK(r.last_errors[0].rfind(path + ":2:1: ", 0) == 0);
    CHECK(p.config().generation == 1);
    std::ofstream(path) << "members:\n  - {name: pg0, host: 127.0.0.1, port: 70000, api: \"http://127.0.0.1:1\"}\n";
    p.daemon().request_reload();
    REQUIRE(eventually([&] { return p.daemon().reloads().failed_total == 2; }));
    r = p.daemon().reloads();
    REQUIRE(r.last_errors.size() == 1);
    CHECK(r.last_errors[0] == path + ":2:40: members[0].port: expected an integer from 1 to 65535, got '70000'");
    CHECK(p.config().generation == 1);
    raw_client c(p.port(0));
    CHECK(c.startup().ready);  // the running configuration works on
    std::remove(path.c_str());
}
