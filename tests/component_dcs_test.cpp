// The DCS watcher and the monitor against stand-in etcd members and Patroni
// APIs on 127.0.0.1: ranges, watches, cancels, failover between endpoints,
// auth, v2 long polls, hostile answers; members discovered and the leader
// key deciding who writes.

#include "health/dcs_watcher.hpp"
#include "health/monitor.hpp"
#include "proxy/balancer.hpp"
#include "support/dcs_fixtures.hpp"
#include "support/fake_etcd.hpp"
#include "support/fake_patroni.hpp"
#include "support/proxy_harness.hpp"

#include <nlohmann/json.hpp>

#include <set>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

using namespace patroxy;
using namespace patroxy::health;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

struct watched {
    boost::asio::io_context ioc;
    std::shared_ptr<dcs_watcher> watcher;
    std::vector<dcs_view> views;
    explicit watched(const conf::dcs_config& d) {
        watcher = std::make_shared<dcs_watcher>(ioc, d, [this](const dcs_view& v) { views.push_back(v); });
        watcher->start();
    }
    ~watched() {
        watcher->stop();
        ioc.restart();
        ioc.poll();
    }
    bool until(const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
        return run_until(ioc, done, limit);
    }
    const dcs_view& last() const { return views.back(); }
};

void serve_cluster(fake_etcd& etcd, std::int64_t revision, const std::string& leader) {
    etcd.on("/v3/kv/range", [revision, leader](const fake_etcd::seen&) {
        return std::optional<fake_etcd::answer>({200,
                                                  range_body(revision, {kv("leader", leader, revision - 1),
                                                                        kv("members/pg0", member_value("http://127.0.0.1:1", 1, "master"), 3),
                                                                        kv("config", R"({"ttl":30,"loop_wait":10})", 2)}),
                                                  {}});
    });
    etcd.stream("/v3/watch", [revision](const fake_etcd::seen&) { return std::vector<std::string>{created_line(revision)}; });
}

}  // namespace

TEST_CASE("the DCS watcher ranges, then watches from the next revision and applies puts and deletes", "[dcs]") {
    fake_etcd etcd;
    serve_cluster(etcd, 10, "pg0");
    watched w(dcs_for({etcd.port()}));
    REQUIRE(w.until([&] { return !w.views.empty() && etcd.count("/v3/watch") == 1; }));
    CHECK(w.last().leader == "pg0");
    CHECK(w.last().ttl == 30s);
    REQUIRE(w.last().members.count("pg0") == 1);
    CHECK(w.last().members.at("pg0").port == 1);
    // The watch starts right after the range's revision, over the cluster's prefix.
    const auto watch = json::parse(etcd.requests().back().body);
    CHECK(watch["create_request"]["start_revision"] == "11");
    CHECK(etcd3::base64_decode(watch["create_request"]["key"].get<std::string>()) == prefix);
    CHECK(etcd3::base64_decode(watch["create_request"]["range_end"].get<std::string>()) == "/service/batman0");

    etcd.push(put_line(11, "leader", "pg1"));
    REQUIRE(w.until([&] { return w.last().leader == "pg1"; }));
    CHECK(w.last().revision == 11);
    etcd.push(delete_line(12, "leader"));
    REQUIRE(w.until([&] { return !w.last().leader.has_value(); }));
    etcd.push(put_line(13, "failover", R"({"leader":"pg0","member":"pg1"})"));
    REQUIRE(w.until([&] { return w.last().failover.has_value(); }));
    CHECK(w.last().failover->member == "pg1");
    // Patroni "cleans up" with an empty object: no failover.
    etcd.push(put_line(14, "failover", "{}"));
    REQUIRE(w.until([&] { return !w.last().failover.has_value(); }));
    // An event the view already has (a resync got ahead) changes nothing.
    const auto before = w.views.size();
    etcd.push(put_line(9, "leader", "stale"));
    etcd.push(put_line(15, "members/pg0", member_value("http://127.0.0.1:1", 1, "replica")));
    REQUIRE(w.until([&] { return w.views.size() > before && w.last().revision == 15; }));
    CHECK(!w.last().leader.has_value());
    CHECK(w.last().members.at("pg0").role == "replica");
    CHECK(w.watcher->state().connected);
    CHECK(w.watcher->state().events >= 5);
}

TEST_CASE("a canceled (compacted) watch starts over with a fresh range and watch", "[dcs]") {
    fake_etcd etcd;
    serve_cluster(etcd, 20, "pg0");
    watched w(dcs_for({etcd.port()}));
    REQUIRE(w.until([&] { return etcd.count("/v3/watch") == 1; }));
    etcd.push(json{{"result", {{"header", header(40)}, {"canceled", true}, {"compact_revision", "30"}}}}.dump());
    REQUIRE(w.until([&] { return etcd.count("/v3/kv/range") == 2 && etcd.count("/v3/watch") == 2; }));
    CHECK(w.last().leader == "pg0");
    // The stream ending (a member restarting) also starts over.
    etcd.end_streams();
    REQUIRE(w.until([&] { return etcd.count("/v3/watch") == 3; }));
    // An error object on the stream, too.
    etcd.push(R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}})");
    REQUIRE(w.until([&] { return etcd.count("/v3/watch") == 4; }));
}

TEST_CASE("an etcd member that refuses or hangs: the watcher moves on to the next", "[dcs]") {
    fake_etcd hung;
    hung.on("/v3/kv/range", [](const fake_etcd::seen&) { return std::optional<fake_etcd::answer>(); });
    fake_etcd good;
    serve_cluster(good, 5, "pg0");
    watched w(dcs_for({closed_port(), hung.port(), good.port()}));
    REQUIRE(w.until([&] { return !w.views.empty(); }, 5s));
    CHECK(w.last().leader == "pg0");
    CHECK(hung.count("/v3/kv/range") >= 1);
    CHECK(w.watcher->state().errors >= 2);
    CHECK(w.watcher->state().endpoint == "127.0.0.1:" + std::to_string(good.port()));
}

TEST_CASE("etcd auth: a token first, and a new one when etcd calls it invalid", "[dcs]") {
    fake_etcd etcd;
    int tokens = 0;
    std::mutex m;
    etcd.on("/v3/auth/authenticate", [&](const fake_etcd::seen& s) {
        const auto req = json::parse(s.body);
        std::lock_guard lock(m);
        ++tokens;
        if (req["name"] != "patroxy" || req["password"] != "secret") {
            return std::optional<fake_etcd::answer>(
                {401, R"({"error":"etcdserver: authentication failed, invalid user ID or password","code":3})", {}});
        }
        return std::optional<fake_etcd::answer>(
            {200, json{{"header", header(1)}, {"token", "tok" + std::to_string(tokens) + ".17"}}.dump(), {}});
    });
    int ranges = 0;
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen& s) {
        std::lock_guard lock(m);
        ++ranges;
        if (ranges == 1 || s.authorization.rfind("tok", 0) != 0) {
            return std::optional<fake_etcd::answer>({401, R"({"error":"etcdserver: invalid auth token","code":16})", {}});
        }
        return std::optional<fake_etcd::answer>({200, range_body(7, {kv("leader", "pg2", 6)}), {}});
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) { return std::vector<std::string>{created_line(7)}; });
    auto d = dcs_for({etcd.port()});
    d.auth = conf::basic_auth{"patroxy", "secret"};
    watched w(d);
    REQUIRE(w.until([&] { return !w.views.empty(); }));
    CHECK(w.last().leader == "pg2");
    std::lock_guard lock(m);
    CHECK(tokens == 2);  // the first token was refused as invalid: authenticated again
    CHECK(etcd.requests().back().authorization == "tok2.17");
}

TEST_CASE("etcd v2: a recursive GET, then long polls from the next index, a cleared index starts over", "[dcs]") {
    fake_etcd etcd;
    std::mutex m;
    int gets = 0;
    int quorum_reads = 0;
    int waits = 0;
    etcd.on("/v2/keys/service/batman", [&](const fake_etcd::seen& s) {
        std::lock_guard lock(m);
        if (s.target.find("wait=true") == std::string::npos) {
            ++gets;
            quorum_reads += s.target.find("quorum=true") != std::string::npos;  // not a cut-off member's own copy
            const json node = {{"key", "/service/batman"}, {"dir", true},
                               {"nodes", {{{"key", "/service/batman/leader"}, {"value", "pg0"}, {"ttl", 28},
                                           {"modifiedIndex", 40}, {"createdIndex", 40}},
                                          {{"key", "/service/batman/members"}, {"dir", true},
                                           {"nodes", {{{"key", "/service/batman/members/pg0"},
                                                       {"value", member_value("http://127.0.0.1:1", 1, "master")},
                                                       {"modifiedIndex", 41}, {"createdIndex", 3}}}}}}},
                               {"modifiedIndex", 2}, {"createdIndex", 2}};
            return std::optional<fake_etcd::answer>(
                {200, json{{"action", "get"}, {"node", node}}.dump(), {{"X-Etcd-Index", "50"}}});
        }
        ++waits;
        if (waits == 1) {
            CHECK(s.target.find("waitIndex=51") != std::string::npos);
            return std::optional<fake_etcd::answer>(
                {200,
                 json{{"action", "expire"},
                      {"node", {{"key", "/service/batman/leader"}, {"modifiedIndex", 55}, {"createdIndex", 40}}},
                      {"prevNode", {{"key", "/service/batman/leader"}, {"value", "pg0"}}}}
                     .dump(),
                 {{"X-Etcd-Index", "55"}}});
        }
        if (waits == 2) {
            CHECK(s.target.find("waitIndex=56") != std::string::npos);
            return std::optional<fake_etcd::answer>(
                {400,
                 R"({"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [1056/56]","index":2055})",
                 {{"X-Etcd-Index", "2055"}}});
        }
        return std::optional<fake_etcd::answer>();  // later waits hang: nothing happens
    });
    auto d = dcs_for({etcd.port()});
    d.type = conf::dcs_config::kind::etcd2;
    watched w(d);
    REQUIRE(w.until([&] {
        std::lock_guard lock(m);
        return gets == 2 && waits >= 3;
    }));
    {
        std::lock_guard lock(m);
        CHECK(quorum_reads == gets);
    }
    // The expire took the leader away; the second GET brought it back (the stand-in's data).
    bool saw_no_leader = false;
    for (const auto& v : w.views) {
        saw_no_leader = saw_no_leader || !v.leader;
    }
    CHECK(saw_no_leader);
    CHECK(w.last().leader == "pg0");
    CHECK(w.last().members.at("pg0").role == "master");
}

TEST_CASE("hostile etcd answers fail their exchange, never the process", "[dcs]") {
    fake_etcd etcd;
    int n = 0;
    std::mutex m;
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen&) {
        std::lock_guard lock(m);
        ++n;
        switch (n) {
        case 1: return std::optional<fake_etcd::answer>({200, "<html>not json</html>", {}});
        case 2: return std::optional<fake_etcd::answer>({200, std::string(5 * 1024 * 1024, '['), {}});
        case 3: return std::optional<fake_etcd::answer>({200, std::string(100000, '[') + std::string(100000, ']'), {}});
        case 4: return std::optional<fake_etcd::answer>({200, R"({"header":{"revision":"x"},"kvs":[{"key":"!!!"}]})", {}});
        case 5:
            return std::optional<fake_etcd::answer>(
                {200, range_body(9, {json{{"key", etcd3::base64_encode(prefix + "leader")}, {"value", "%%%"}}}), {}});
        default: return std::optional<fake_etcd::answer>({200, range_body(9, {kv("leader", "pg0", 8)}), {}});
        }
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) {
        return std::vector<std::string>{created_line(9), "garbage that is not JSON"};
    });
    watched w(dcs_for({etcd.port()}));
    // The fifth answer parses (a leader key whose value is not base64: no
    // leader): a view may come of it first, then the sixth's.
    REQUIRE(w.until([&] { return !w.views.empty() && w.last().leader == "pg0"; }, 10s));
    CHECK(w.watcher->state().errors >= 4);
    // The garbage line on the watch ended that watch; the watcher starts over.
    REQUIRE(w.until([&] { return etcd.count("/v3/watch") >= 2; }, 10s));
}

TEST_CASE("members come from the DCS, a key holder whose API hangs stays leader, and routing follows the key at once",
          "[dcs]") {
    fake_patroni api0(fake_patroni::answer("master"));
    fake_patroni api1(fake_patroni::answer("replica"));
    fake_etcd etcd;
    const auto m0 = member_value(api0.url(), 25432, "master");
    const auto m1 = member_value(api1.url(), 25433, "replica");
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen&) {
        return std::optional<fake_etcd::answer>(
            {200, range_body(30, {kv("leader", "pg0", 29), kv("members/pg0", m0, 10), kv("members/pg1", m1, 11)}), {}});
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) { return std::vector<std::string>{created_line(30)}; });

    auto cfg = monitor_config(etcd.port());
    // A regular interval well above the confirmation checks' 50 ms, so that a
    // loaded host cannot blur the two (the promotion is timed below).
    cfg->health.interval = 1s;
    boost::asio::io_context ioc;
    std::vector<topology_ptr> published;
    monitor mon(ioc, cfg, [&](topology_ptr t) { published.push_back(std::move(t)); });
    mon.start();
    const auto leader_name = [&] {
        const auto t = mon.latest();
        return t->leader ? t->members[*t->leader].name : std::string("none");
    };
    REQUIRE(run_until(ioc, [&] { return leader_name() == "pg0" && mon.latest()->members.size() == 2; }, 5s));
    CHECK(mon.latest()->leader_source == lock_observation::source::dcs);
    CHECK(mon.latest()->members[0].discovered);
    CHECK(mon.latest()->members[0].port == 25432);
    // pg1's first answer may come a little after pg0's.
    REQUIRE(run_until(ioc, [&] { return mon.latest()->readable.size() == 1; }, 3s));

    // pg0's API hangs: it goes DOWN, but it holds the key: it still leads.
    api0.set_mode(fake_patroni::mode::hang);
    REQUIRE(run_until(ioc, [&] { return !mon.latest()->members[0].up; }, 3s));
    CHECK(leader_name() == "pg0");
    run_until(ioc, [] { return false; }, 300ms);
    CHECK(leader_name() == "pg0");

    // The key moves to pg1 before pg1 answers as primary: nobody writes yet;
    // once it does, routing follows within a confirmation check (50 ms).
    etcd.push(put_line(31, "leader", "pg1"));
    REQUIRE(run_until(ioc, [&] { return mon.latest()->lock_holder == "pg1"; }, 2s));
    CHECK(leader_name() == "none");
    api1.set_body(fake_patroni::answer("master"));
    const auto promoted = std::chrono::steady_clock::now();
    REQUIRE(run_until(ioc, [&] { return leader_name() == "pg1"; }, 2s));
    const auto took = std::chrono::steady_clock::now() - promoted;
    INFO("routing followed the promotion after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                                 << " ms");
    CHECK(took < 500ms);  // the regular interval here is 1 s: only the confirmation checks make it

    // pg0's key expires: it leaves the set; sessions on it lose their member.
    etcd.push(delete_line(32, "members/pg0"));
    REQUIRE(run_until(ioc, [&] { return mon.latest()->members.size() == 1; }, 2s));
    CHECK(!mon.latest()->position(published.front()->members[0].id));
    // A DCS that suddenly lists nobody does not take the last member away.
    etcd.push(delete_line(33, "members/pg1"));
    run_until(ioc, [] { return false; }, 300ms);
    CHECK(mon.latest()->members.size() == 1);
    mon.stop();
    ioc.restart();
    ioc.poll();
}

TEST_CASE("a replica whose API hangs keeps its open read sessions while its DCS key says it runs as a replica",
          "[dcs]") {
    fake_patroni api0(fake_patroni::answer("master"));
    fake_patroni api1(fake_patroni::answer("replica"));
    fake_patroni api2(fake_patroni::answer("replica"));
    fake_etcd etcd;
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen&) {
        return std::optional<fake_etcd::answer>(
            {200,
             range_body(30, {kv("leader", "pg0", 29), kv("members/pg0", member_value(api0.url(), 25432, "master"), 10),
                             kv("members/pg1", member_value(api1.url(), 25433, "replica"), 11),
                             kv("members/pg2", member_value(api2.url(), 25434, "replica"), 12)}),
             {}});
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) { return std::vector<std::string>{created_line(30)}; });

    auto cfg = monitor_config(etcd.port());
    const auto& reads = cfg->listeners[1];
    REQUIRE(reads.role == conf::listener_role::read);
    boost::asio::io_context ioc;
    monitor mon(ioc, cfg, [](topology_ptr) {});
    mon.start();
    REQUIRE(run_until(ioc, [&] { return mon.latest()->readable.size() == 2; }, 5s));
    REQUIRE(mon.latest()->members[1].name == "pg1");
    const auto pg1 = mon.latest()->members[1].id;

    // pg1's API hangs: DOWN, so new reads go to pg2 only; its open sessions
    // of a plain read class may stay, since Patroni's key says it replicates.
    api1.set_mode(fake_patroni::mode::hang);
    REQUIRE(run_until(ioc, [&] { return !mon.latest()->members[1].up; }, 3s));
    const auto down = mon.latest();
    CHECK(down->readable == std::vector<std::size_t>{2});
    CHECK(down->class_of(reads.name)->routed() == std::vector<std::size_t>{2});
    CHECK(!proxy::keeps_session(*down, reads, conf::listener_role::read, pg1));
    CHECK(proxy::keeps_while_api_fails(*down, reads, conf::listener_role::read, pg1));
    CHECK(proxy::keeps_while_api_fails(*down, reads, conf::listener_role::any, pg1));
    // Not where the rule needs the silent API's answer: lag, sync state.
    auto lagged = reads;
    lagged.max_lag.bytes = 1 << 20;
    CHECK(!proxy::keeps_while_api_fails(*down, lagged, conf::listener_role::read, pg1));
    CHECK(!proxy::keeps_while_api_fails(*down, reads, conf::listener_role::sync, pg1));
    CHECK(!proxy::keeps_while_api_fails(*down, reads, conf::listener_role::async, pg1));
    CHECK(!proxy::keeps_while_api_fails(*down, reads, conf::listener_role::read, mon.latest()->members[2].id));  // up

    const auto kept = [&] { return proxy::keeps_while_api_fails(*mon.latest(), reads, conf::listener_role::read, pg1); };
    // Its key says PostgreSQL stopped: the sessions go.
    etcd.push(put_line(31, "members/pg1", member_value(api1.url(), 25433, "replica", "stopped")));
    REQUIRE(run_until(ioc, [&] { return !kept(); }, 2s));
    // Running again per its key, then the key expires (Patroni stopped refreshing it): gone with it.
    etcd.push(put_line(32, "members/pg1", member_value(api1.url(), 25433, "replica")));
    REQUIRE(run_until(ioc, kept, 2s));
    // Restoring from the archive (Patroni 3.0.4+ say so in the key): not on the key's word.
    auto restoring = json::parse(member_value(api1.url(), 25433, "replica"));
    restoring["replication_state"] = "in archive recovery";
    etcd.push(put_line(33, "members/pg1", restoring.dump()));
    REQUIRE(run_until(ioc, [&] { return !kept(); }, 2s));
    etcd.push(put_line(34, "members/pg1", member_value(api1.url(), 25433, "replica")));
    REQUIRE(run_until(ioc, kept, 2s));
    etcd.push(delete_line(35, "members/pg1"));
    REQUIRE(run_until(ioc, [&] { return !kept(); }, 2s));
    mon.stop();
    ioc.restart();
    ioc.poll();
}

TEST_CASE("through patroxy: a read session on a replica whose API hangs goes on while its DCS key says it replicates",
          "[dcs][component]") {
    std::vector<std::unique_ptr<fake_member>> members;
    members.push_back(std::make_unique<fake_member>("pg0", "master"));
    members.push_back(std::make_unique<fake_member>("pg1", "replica"));
    members.push_back(std::make_unique<fake_member>("pg2", "replica"));
    const auto key = [&](std::size_t i, const std::string& role, const std::string& state = "running") {
        return member_value(members[i]->api.url(), members[i]->pg->port(), role, state);
    };
    fake_etcd etcd;
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen&) {
        return std::optional<fake_etcd::answer>({200,
                                                  range_body(30, {kv("leader", "pg0", 29), kv("members/pg0", key(0, "master"), 10),
                                                                  kv("members/pg1", key(1, "replica"), 11),
                                                                  kv("members/pg2", key(2, "replica"), 12)}),
                                                  {}});
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) { return std::vector<std::string>{created_line(30)}; });
    auto cfg = config_for(members);
    cfg.scope = "batman";
    cfg.dcs = dcs_for({etcd.port()});
    cfg.health.fall = 2;
    proxy_under_test p(cfg);
    const auto pg1_up = [&] {
        const auto t = p.topology();
        return std::any_of(t->members.begin(), t->members.end(), [](const member_view& m) { return m.name == "pg1" && m.up; });
    };
    REQUIRE(eventually([&] {
        const auto t = p.topology();
        return t->readable.size() == 2 && t->leader_source == lock_observation::source::dcs;
    }));
    // A read session on each replica (round robin).
    raw_client a(p.port(1));
    raw_client b(p.port(1));
    const auto on_a = a.startup().server_name;
    const auto on_b = b.startup().server_name;
    REQUIRE(std::set<std::string>{on_a, on_b} == std::set<std::string>{"pg1", "pg2"});
    auto& on_pg1 = on_a == "pg1" ? a : b;
    const packet ping{'x'};

    members[1]->api.set_mode(fake_patroni::mode::hang);
    REQUIRE(eventually([&] { return !pg1_up(); }, 3s));
    std::this_thread::sleep_for(300ms);  // the workers have seen the topology without it
    CHECK(on_pg1.send(ping));
    CHECK(on_pg1.read_byte() == std::uint8_t{'x'});
    raw_client c(p.port(1));
    CHECK(c.startup().server_name == "pg2");  // new reads: the replica that answers

    // Its key says PostgreSQL stopped: the session is cut.
    etcd.push(put_line(31, "members/pg1", key(1, "replica", "stopped")));
    for (int i = 0; i < 512 && on_pg1.read_byte(); ++i) {
    }
    CHECK(on_pg1.closed_by_peer());
}

TEST_CASE("a discovered member's PostgreSQL host name is resolved, and routed by its address", "[dcs]") {
    fake_patroni api(fake_patroni::answer("master"));
    fake_etcd etcd;
    const auto m0 = json{{"conn_url", "postgres://localhost:25440/postgres"},
                         {"api_url", "http://localhost:" + std::to_string(api.port()) + "/patroni"},
                         {"state", "running"},
                         {"role", "master"}}
                        .dump();
    etcd.on("/v3/kv/range", [&](const fake_etcd::seen&) {
        return std::optional<fake_etcd::answer>({200, range_body(3, {kv("leader", "pg0", 2), kv("members/pg0", m0, 1)}), {}});
    });
    etcd.stream("/v3/watch", [](const fake_etcd::seen&) { return std::vector<std::string>{created_line(3)}; });
    auto cfg = std::make_shared<conf::config>();
    cfg->scope = "batman";
    cfg->dcs = dcs_for({etcd.port()});
    cfg->listeners = conf::config::default_listeners();
    boost::asio::io_context ioc;
    monitor mon(ioc, cfg, [](topology_ptr) {});
    mon.start();
    REQUIRE(run_until(ioc, [&] { return mon.latest()->leader.has_value(); }, 5s));
    const auto& m = mon.latest()->members[0];
    CHECK(m.host == "127.0.0.1");
    CHECK(m.address_name == "localhost");
    CHECK(m.port == 25440);
    mon.stop();
    ioc.restart();
    ioc.poll();
}
