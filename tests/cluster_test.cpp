// Integration tests on the real lab cluster (3 etcd, 3 Patroni + PostgreSQL 15),
// started by CTest's `lab` fixture (lab/cluster.sh up). patroxy runs as a child
// process on ports 15000/15001; assertions go through libpq.

#include "health/patroni_client.hpp"
#include "support/http_get.hpp"
#include "support/lab.hpp"
#include "support/raw_client.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <dirent.h>
#include <poll.h>

#include <future>
#include <thread>
#include <map>
#include <set>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

// One GET /patroni through patroxy's own client.
health::check_result ask_patroni(int member) {
    boost::asio::io_context ioc;
    conf::member_config m;
    m.name = "pg" + std::to_string(member);
    m.api.host = "127.0.0.1";
    m.api.port = static_cast<std::uint16_t>(lab_int("LAB_API_PORT_BASE") + member);
    health::check_result out;
    auto client = std::make_shared<health::patroni_client>(ioc, m, 3s, [&](health::check_result r) {
        out = std::move(r);
        ioc.stop();
        return 1h;
    });
    client->start();
    ioc.run_for(5s);
    client->stop();
    return out;
}

}  // namespace

TEST_CASE("the lab cluster has one leader and two streaming replicas, per Patroni's REST API", "[cluster]") {
    int leaders = 0;
    int replicas = 0;
    int streaming = 0;
    for (int i = 0; i < 3; ++i) {
        const auto r = ask_patroni(i);
        INFO("pg" << i << ": " << r.error);
        REQUIRE(r.answered);
        CHECK(r.report->running());
        if (r.report->role == health::patroni_role::primary) {
            ++leaders;
            streaming = r.report->streaming_replicas;
        } else if (r.report->role == health::patroni_role::replica) {
            ++replicas;
        }
        CHECK(r.report->scope == "postgres-cluster");
    }
    CHECK(leaders == 1);
    CHECK(replicas == 2);
    CHECK(streaming == 2);
}

TEST_CASE("the write port reaches only the leader and the read port alternates over the replicas", "[cluster]") {
    patroxy_process px;
    REQUIRE(px.wait_ready());
    const int leader = leader_port();
    for (int i = 0; i < 5; ++i) {
        pg_connection c(px.write_conninfo());
        REQUIRE(c.ok());
        const auto w = which_member(c);
        REQUIRE(w);
        CHECK(!w->in_recovery);
        CHECK(w->port == leader);
    }
    REQUIRE(poll_until([&] {
        pg_connection c(px.read_conninfo());
        return c.ok();
    }, 10s));
    std::vector<int> ports;
    for (int i = 0; i < 6; ++i) {
        pg_connection c(px.read_conninfo());
        REQUIRE(c.ok());
        const auto w = which_member(c);
        REQUIRE(w);
        CHECK(w->in_recovery);
        CHECK(w->port != leader);
        ports.push_back(w->port);
    }
    CHECK(std::set<int>(ports.begin(), ports.end()).size() == 2);
    for (std::size_t i = 1; i < ports.size(); ++i) {
        CHECK(ports[i] != ports[i - 1]);  // in turn
    }
}

TEST_CASE("after a switchover, new writes reach the new leader and read sessions on it are cut by patroxy", "[cluster]") {
    patroxy_process px("health: {interval: 2s, fast_interval: 500ms}\n");
    REQUIRE(px.wait_ready());
    const int old_leader = leader_port();
    pg_connection held(px.write_conninfo("application_name=held-through-switchover"));
    REQUIRE(held.ok());
    REQUIRE(which_member(held)->port == old_leader);
    // A read session on the replica about to be promoted: PostgreSQL promotes
    // it in place (no restart), so only patroxy can end it.
    std::unique_ptr<pg_connection> reader;
    REQUIRE(poll_until([&] {
        reader = std::make_unique<pg_connection>(px.read_conninfo("application_name=reader-on-candidate"));
        return reader->ok();
    }, 10s));
    const int candidate_port = which_member(*reader)->port;
    const std::string candidate = "pg" + std::to_string(candidate_port - lab_int("LAB_PG_PORT_BASE"));
    const int reader_port = reader->local_port();

    const auto [rc, out] = lab("switchover " + candidate);
    REQUIRE(rc == 0);
    REQUIRE(leader_port() == candidate_port);

    // New sessions through the write port reach the new leader (bounded wait),
    // and none of them ever lands on a member in recovery.
    int in_recovery = 0;
    REQUIRE(poll_until([&] {
        pg_connection c(px.write_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        in_recovery += w && w->in_recovery ? 1 : 0;
        return w && !w->in_recovery && w->port == candidate_port;
    }, 20s, 200ms));
    CHECK(in_recovery == 0);
    // Patroni 3.0.2 restarts the old leader's PostgreSQL to demote it, which ends
    // the write session before patroxy even hears of the change.
    CHECK(!held.scalar("SELECT 1"));
    // The read session on the promoted replica: cut by patroxy (its PostgreSQL
    // would have kept it), logged as backend_down.
    CHECK(!reader->scalar("SELECT 1"));
    INFO(px.log());
    CHECK(poll_until([&] {
        return std::regex_search(px.log(), std::regex("listener=replicas member=" + candidate + " client=127\\.0\\.0\\.1:" +
                                                      std::to_string(reader_port) + " .*reason=backend_down"));
    }, 3s));
    REQUIRE(lab("wait-healthy 60").first == 0);
}

TEST_CASE("without the DCS, a leader whose Patroni died keeps its sessions while the others' GET /cluster name it",
          "[cluster]") {
    // REST only (no dcs: in the file): the lock holder comes from the other
    // members' GET /cluster. Patroni killed, PostgreSQL runs on: its API is
    // gone and it goes DOWN, but it holds the lock until the key expires.
    patroxy_process px("health: {interval: 1s, fast_interval: 300ms, timeout: 500ms, fall: 3}\n");
    REQUIRE(px.wait_ready());
    const int old_leader = leader_port();
    pg_connection held(px.write_conninfo("application_name=held-on-orphan"));
    REQUIRE(held.ok());
    REQUIRE(which_member(held)->port == old_leader);
    const int held_port = held.local_port();

    const auto [rc, killed] = lab("kill-leader-patroni");
    REQUIRE(rc == 0);
    for (int i = 0; i < 12; ++i) {
        std::this_thread::sleep_for(500ms);
        INFO("after " << (i + 1) * 500 << " ms");
        REQUIRE(held.scalar("SELECT 1"));
    }
    INFO(px.log());
    CHECK(px.log().find(killed + " is DOWN after failed checks") != std::string::npos);
    const auto st = nlohmann::json::parse(http_get(px.port_numbers().stats, "/status.json").body, nullptr, false);
    CHECK(st["cluster"]["leader"] == killed);
    CHECK(st["cluster"]["leader_source"] == "cluster");
    // Once another member leads, new writes go there (until then they still
    // reach the holder: it is the leader while its key lives), the orphaned
    // primary's sessions are cut (its PostgreSQL still accepts direct
    // connections: patroxy did the cutting), and no write session ever
    // reaches a member in recovery.
    int in_recovery = 0;
    REQUIRE(poll_until([&] {
        pg_connection c(px.write_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        in_recovery += w && w->in_recovery ? 1 : 0;
        return w && !w->in_recovery && w->port != old_leader;
    }, 40s, 200ms));
    CHECK(in_recovery == 0);
    CHECK(poll_until([&] {
        return std::regex_search(px.log(), std::regex("client=127\\.0\\.0\\.1:" + std::to_string(held_port) +
                                                      " user=postgres db=postgres app=held-on-orphan .* reason=backend_down"));
    }, 5s));
    CHECK(!held.scalar("SELECT 1"));
    pg_connection direct(member_conninfo(old_leader - lab_int("LAB_PG_PORT_BASE")));
    CHECK(direct.ok());
    bring_back(killed);
}

TEST_CASE("after SIGKILL of the leader, no write session lands on a member in recovery and writes resume", "[cluster]") {
    patroxy_process px("health: {interval: 2s, fast_interval: 500ms}\ntimeouts: {wait_for_backend: 2s}\n");
    REQUIRE(px.wait_ready());
    {
        pg_connection c(px.write_conninfo());
        REQUIRE(c.scalar("CREATE TABLE IF NOT EXISTS failover_probe (at timestamptz DEFAULT now(), n int)"));
    }
    const auto [rc, killed] = lab("kill-leader");
    REQUIRE(rc == 0);
    const auto killed_at = std::chrono::steady_clock::now();
    int attempts = 0;
    int in_recovery = 0;
    bool written = false;
    // Bounded: Patroni promotes after its ttl (10 s in the lab).
    while (!written && std::chrono::steady_clock::now() - killed_at < 60s && attempts < 600) {
        ++attempts;
        pg_connection c(px.write_conninfo());
        if (c.ok()) {
            const auto w = which_member(c);
            if (w && w->in_recovery) {
                ++in_recovery;
            }
            written = c.scalar("INSERT INTO failover_probe (n) VALUES (" + std::to_string(attempts) + ")").has_value();
        }
        if (!written) {
            std::this_thread::sleep_for(100ms);
        }
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
    INFO("writes resumed after " << took.count() << " ms, " << attempts << " attempts");
    CHECK(written);
    CHECK(in_recovery == 0);
    bring_back(killed);
}

TEST_CASE("SIGTERM stops accepting, closes idle sessions with 57P01, lets a transaction finish, and exits 0", "[cluster]") {
    patroxy_process px("timeouts: {drain: 6s}\n");
    REQUIRE(px.wait_ready());
    pg_connection idle(px.write_conninfo("application_name=idle"));
    pg_connection in_tx(px.write_conninfo("application_name=in-tx"));
    REQUIRE(idle.ok());
    REQUIRE(in_tx.scalar("BEGIN"));
    REQUIRE(in_tx.scalar("SELECT 1"));
    std::this_thread::sleep_for(1100ms);  // past the grace a fresh session gets for its first transaction
    auto exit_code = std::async(std::launch::async, [&] { return px.signal_and_wait(SIGTERM, 15s); });
    // Draining: no new sessions.
    REQUIRE(poll_until([&] {
        pg_connection c(px.write_conninfo("connect_timeout=2"));
        return !c.ok();
    }, 5s));
    // The idle one is told FATAL 57P01 at its idle point (within the drain's spread, half of it).
    const auto told = wait_until_ended(idle, 5s);
    INFO(told);
    CHECK(told.find("FATAL:  terminating connection: patroxy: patroxy is shutting down") != std::string::npos);
    // The one in a transaction block finishes it, and is closed after.
    CHECK(in_tx.scalar("SELECT 42") == std::optional<std::string>("42"));
    CHECK(exit_code.wait_for(300ms) == std::future_status::timeout);  // waits for that session
    CHECK(in_tx.scalar("COMMIT"));
    REQUIRE(exit_code.wait_for(10s) == std::future_status::ready);
    CHECK(exit_code.get() == 0);
    const auto log = px.log();
    CHECK(std::regex_search(log, std::regex("SIGTERM: no new sessions; draining [0-9]+ session")));
    CHECK(std::regex_search(log, std::regex("app=in-tx .*reason=drained")));
}

TEST_CASE("status.json and metrics follow a switchover, and promtool accepts the metrics", "[cluster]") {
    patroxy_process px("health: {interval: 2s, fast_interval: 500ms}\n");
    REQUIRE(px.wait_ready());
    const int stats = px.port_numbers().stats;
    REQUIRE(http_get(stats, "/health").status == 200);
    for (int i = 0; i < 3; ++i) {
        pg_connection c(px.write_conninfo());
        REQUIRE(c.scalar("SELECT 1"));
    }
    auto before = nlohmann::json::parse(http_get(stats, "/status.json").body);
    const auto old_leader = before["cluster"]["leader"].get<std::string>();
    CHECK(before["cluster"]["scope"] == "postgres-cluster");
    CHECK(before["members"].size() == 3);
    CHECK(before["listeners"][0]["sessions_total"].get<int>() >= 3);
    const auto old_sessions = before["members"][std::stoi(old_leader.substr(2))]["listeners"]["master"]["sessions_total"].get<int>();
    CHECK(old_sessions >= 3);

    REQUIRE(lab("switchover").first == 0);
    const auto [rc, new_leader] = lab("leader");
    REQUIRE(rc == 0);
    nlohmann::json after;
    REQUIRE(poll_until([&] {
        after = nlohmann::json::parse(http_get(stats, "/status.json").body, nullptr, false);
        return !after.is_discarded() && after["cluster"]["leader"] == new_leader;
    }, 20s, 200ms));
    CHECK(after["cluster"]["leader_changes_total"].get<int>() >= 1);
    CHECK(after["cluster"]["last_leader_change_at"].is_number());
    {
        pg_connection c(px.write_conninfo());
        REQUIRE(c.scalar("SELECT 1"));
    }
    const auto now = nlohmann::json::parse(http_get(stats, "/status.json").body);
    CHECK(now["members"][std::stoi(new_leader.substr(2))]["listeners"]["master"]["sessions_total"].get<int>() >= 1);
    CHECK(now["members"][std::stoi(old_leader.substr(2))]["listeners"]["master"]["role"] != "routing");

    const auto metrics = http_get(stats, "/metrics");
    REQUIRE(metrics.status == 200);
    CHECK(metrics.body.find("patroxy_member_leader{member=\"" + new_leader + "\"} 1") != std::string::npos);
    const std::string file = "/tmp/patroxy-metrics-" + std::to_string(::getpid()) + ".txt";
    std::ofstream(file) << metrics.body;
    CHECK(std::system(("promtool check metrics < " + file + " > /dev/null 2>&1").c_str()) == 0);
    std::remove(file.c_str());
    REQUIRE(lab("wait-healthy 60").first == 0);
}

TEST_CASE("TLS is relayed end to end through both ports (sslmode=require)", "[cluster]") {
    patroxy_process px;
    REQUIRE(px.wait_ready());
    for (const auto& info : {px.write_conninfo("sslmode=require"), px.read_conninfo("sslmode=require")}) {
        pg_connection c(info);
        INFO(c.error());
        REQUIRE(c.ok());
        CHECK(PQsslInUse(c.raw()) == 1);
        CHECK(c.scalar("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == std::optional<std::string>("true"));
    }
    // Session logs name TLS sessions by their first packet, not by user. The
    // line is written when patroxy sees the close, a moment after ours.
    bool logged = false;
    for (int i = 0; i < 100 && !logged; ++i) {
        logged = px.log().find("first=ssl_request") != std::string::npos;
        if (!logged) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    CHECK(logged);
}

TEST_CASE("status.json lists open sessions with user and database and application_name and TLS ones as encrypted", "[cluster]") {
    patroxy_process px;
    REQUIRE(px.wait_ready());
    pg_connection plain(px.write_conninfo("sslmode=disable application_name=stats-check"));
    REQUIRE(plain.scalar("SELECT 1"));
    pg_connection tls(px.read_conninfo("sslmode=require"));
    REQUIRE(tls.scalar("SELECT 1"));
    nlohmann::json j;
    // wait_ready()'s own probe session may still be closing.
    REQUIRE(poll_until([&] {
        j = nlohmann::json::parse(http_get(px.port_numbers().stats, "/status.json").body);
        return j["sessions"].size() == 2;
    }, 5s, 100ms));
    const auto& first = j["sessions"][0];
    CHECK(first["listener"] == "master");
    CHECK(first["user"] == "postgres");
    CHECK(first["database"] == "postgres");
    CHECK(first["application_name"] == "stats-check");
    CHECK(first["encrypted"] == false);
    CHECK(first["state"] == "active");
    const auto& second = j["sessions"][1];
    CHECK(second["listener"] == "replicas");
    CHECK(second["encrypted"] == true);
    CHECK(second["user"].is_null());
    const auto page = http_get(px.port_numbers().stats, "/").body;
    CHECK(page.find("<td>stats-check</td>") != std::string::npos);
}

TEST_CASE("with no leader to route to, libpq shows patroxy's FATAL 57P03, plaintext and with sslmode=prefer", "[cluster]") {
    const auto [rc, leader] = lab("leader");
    REQUIRE(rc == 0);
    std::string replica;
    for (const auto* m : {"pg0", "pg1", "pg2"}) {
        if (m != leader) {
            replica = m;
            break;
        }
    }
    // A write listener that may only use a replica: it never has a leader.
    patroxy_process px("timeouts: {wait_for_backend: 500ms}\n", patroxy_ports{},
                       "listeners:\n  - {name: master, role: write, bind: 127.0.0.1, port: 15000, members: [" + replica + "]}\n");
    REQUIRE(poll_until([&] { return http_get(17000, "/status.json").status == 200; }, 10s));
    for (const auto* mode : {"sslmode=disable", "sslmode=prefer"}) {
        pg_connection c(px.write_conninfo(mode));
        INFO(mode);
        CHECK(!c.ok());
        CHECK(c.error().find("FATAL:  patroxy: no leader available for listener 'master' after waiting 500ms") !=
              std::string::npos);
        CHECK(c.error().find("server closed the connection unexpectedly") == std::string::npos);
    }
}

TEST_CASE("PQcancel through the read port cancels pg_sleep within 1 s on each replica in turn", "[cluster]") {
    patroxy_process px;
    REQUIRE(px.wait_ready());
    REQUIRE(poll_until([&] {
        pg_connection c(px.read_conninfo());
        return c.ok();
    }, 10s));
    std::set<int> replicas;
    for (int i = 0; i < 4; ++i) {
        pg_connection c(px.read_conninfo());
        REQUIRE(c.ok());
        replicas.insert(which_member(c)->port);
        REQUIRE(PQsendQuery(c.raw(), "SELECT pg_sleep(30)") == 1);
        std::this_thread::sleep_for(200ms);  // the query is running on the replica
        PGcancel* cancel = PQgetCancel(c.raw());
        char error[256] = {};
        const auto sent = std::chrono::steady_clock::now();
        REQUIRE(PQcancel(cancel, error, sizeof error) == 1);
        PQfreeCancel(cancel);
        std::string sqlstate;
        while (PGresult* res = PQgetResult(c.raw())) {
            if (const char* st = PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
                sqlstate = st;
            }
            PQclear(res);
        }
        const auto took = std::chrono::steady_clock::now() - sent;
        INFO("session " << i << ": " << error);
        CHECK(sqlstate == "57014");
        CHECK(took < 1s);
    }
    CHECK(replicas.size() == 2);
    CHECK(px.log().find("first=cancel_request") != std::string::npos);
}

TEST_CASE("pg_terminate_backend ends the client's connection through patroxy at once, with PostgreSQL's error", "[cluster]") {
    patroxy_process px;
    REQUIRE(px.wait_ready());  // the write port routes to the leader
    for (int i = 0; i < 3; ++i) {
        pg_connection victim(px.write_conninfo());
        REQUIRE(victim.ok());
        const auto pid = victim.scalar("SELECT pg_backend_pid()");
        REQUIRE(pid);
        // An idle connection's libpq passes an error to its notice processor.
        std::string notices;
        PQsetNoticeProcessor(
            victim.raw(), [](void* out, const char* text) { *static_cast<std::string*>(out) += text; }, &notices);
        pg_connection admin(px.write_conninfo());
        REQUIRE(admin.scalar("SELECT pg_terminate_backend(" + *pid + ")::text") == "true");
        // PostgreSQL sends FATAL 57P01 and closes: libpq must see the end
        // (PQconsumeInput fails) without sending anything itself.
        bool ended = false;
        const auto until = std::chrono::steady_clock::now() + 3s;
        for (int polls = 0; polls < 100 && !ended && std::chrono::steady_clock::now() < until; ++polls) {
            pollfd pfd{PQsocket(victim.raw()), POLLIN, 0};
            if (::poll(&pfd, 1, 100) > 0) {
                ended = PQconsumeInput(victim.raw()) == 0;
                PQisBusy(victim.raw());  // parses what arrived: the FATAL goes to the notice processor
            }
        }
        INFO("round " << i << ": " << notices << PQerrorMessage(victim.raw()));
        CHECK(ended);
        CHECK(notices.find("terminating connection due to administrator command") != std::string::npos);
    }
}

TEST_CASE("a thousand slowloris connections are closed by the startup timeout while real sessions go on", "[cluster]") {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    patroxy_process px("timeouts: {startup: 2s}\n");
    REQUIRE(px.wait_ready());
    std::vector<std::unique_ptr<raw_client>> slow;
    for (int i = 0; i < 1000; ++i) {
        slow.push_back(std::make_unique<raw_client>(static_cast<std::uint16_t>(px.port_numbers().read), 10s));
        slow.back()->send({0, 0, 0});  // three bytes of a length, then nothing
    }
    // The port keeps serving while they dangle.
    for (int i = 0; i < 20; ++i) {
        pg_connection c(px.read_conninfo());
        REQUIRE(c.ok());
        CHECK(c.scalar("SELECT count(*) FROM pg_class").has_value());
    }
    int closed = 0;
    for (auto& s : slow) {
        closed += s->closed_by_peer() ? 1 : 0;  // each recv waits at most 10 s
    }
    CHECK(closed == 1000);
    // patroxy closes the socket first and logs right after: poll for the lines.
    std::size_t timeouts = 0;
    poll_until([&] {
        const auto log = px.log();
        timeouts = 0;
        for (auto at = log.find("reason=startup_timeout"); at != std::string::npos;
             at = log.find("reason=startup_timeout", at + 1)) {
            ++timeouts;
        }
        return timeouts == 1000;
    }, 5s);
    CHECK(timeouts == 1000);
}

namespace {
// The lowest descriptor number process `pid` does not have open: the next
// one it gets.
int lowest_free_descriptor(pid_t pid) {
    std::set<int> open;
    DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    for (const dirent* e = d != nullptr ? ::readdir(d) : nullptr; e != nullptr; e = ::readdir(d)) {
        if (e->d_name[0] != '.') {
            open.insert(std::atoi(e->d_name));
        }
    }
    if (d != nullptr) {
        ::closedir(d);
    }
    int n = 0;
    while (open.count(n) != 0) {
        ++n;
    }
    return n;
}

// User plus system CPU seconds process `pid` has used.
double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i) {
        fields >> skip;  // fields 3..13 of proc(5)
    }
    double utime = 0;
    double stime = 0;
    fields >> utime >> stime;
    return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}
}  // namespace

TEST_CASE("out of descriptors, patroxy stops accepting first: checks, stats and sessions go on, and it accepts again", "[cluster]") {
    patroxy_process px("health: {interval: 500ms, fast_interval: 250ms}\n");
    REQUIRE(px.wait_ready());
    pg_connection open_before(px.write_conninfo());
    REQUIRE(open_before.ok());
    rlimit roomy{};
    REQUIRE(::prlimit(px.pid(), RLIMIT_NOFILE, nullptr, &roomy) == 0);
    // A limit an operator's prlimit could set: 40 above what is open now.
    // Before the ceiling followed it, 20 clients took those descriptors and
    // the health checks of every member failed with EMFILE.
    rlimit tight = roomy;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free_descriptor(px.pid()) + 40);
    REQUIRE(::prlimit(px.pid(), RLIMIT_NOFILE, &tight, nullptr) == 0);
    REQUIRE(poll_until([&] { return px.log().find("descriptor limit now") != std::string::npos; }, 3s));
    std::vector<std::unique_ptr<raw_client>> waiting;
    for (int i = 0; i < 20; ++i) {
        // Connected by the kernel (the listen backlog); patroxy does not accept them now.
        waiting.push_back(std::make_unique<raw_client>(static_cast<std::uint16_t>(px.port_numbers().write)));
        // The bench user is trusted on loopback: its startup is answered without a password.
        waiting.back()->send(make_startup({{"user", lab_env().at("LAB_BENCH_USER")}, {"database", "postgres"}}));
    }
    // Six health intervals: every member stays UP, /health and status.json answer.
    const double cpu_before = cpu_seconds(px.pid());
    for (int i = 0; i < 6; ++i) {
        std::this_thread::sleep_for(500ms);
        CHECK(http_get(px.port_numbers().stats, "/health").status == 200);
        const auto j = nlohmann::json::parse(http_get(px.port_numbers().stats, "/status.json").body, nullptr, false);
        REQUIRE(!j.is_discarded());
        for (const auto& m : j["members"]) {
            CHECK(m["check"]["status"] == "UP");
        }
    }
    CHECK(cpu_seconds(px.pid()) - cpu_before < 0.5);  // no busy loop meanwhile
    const auto log = px.log();
    INFO(log);
    CHECK(log.find("Too many open files") == std::string::npos);
    CHECK(log.find("is DOWN") == std::string::npos);
    // The session it had goes on.
    CHECK(open_before.scalar("SELECT 1") == "1");
    REQUIRE(::prlimit(px.pid(), RLIMIT_NOFILE, &roomy, nullptr) == 0);
    // The clients that waited in the backlog are served once the limit is back.
    int answered = 0;
    for (auto& w : waiting) {
        answered += w->read_until_ready().ready;
    }
    CHECK(answered == 20);
    CHECK(poll_until([&] {
        pg_connection c(px.write_conninfo());
        return c.ok() && c.scalar("SELECT 1") == "1";
    }, 5s, 100ms));
    CHECK(px.running());
}

TEST_CASE("a member removed from the file by a reload: its sessions finish their transaction and get 57P01 at an idle point", "[cluster]") {
    const std::string drain = "timeouts: {drain: 8s}\n";
    patroxy_process px(drain);
    REQUIRE(px.wait_ready());
    const auto [rc, leader] = lab("leader");
    REQUIRE(rc == 0);
    // Two read sessions on one replica: one idle, one in a transaction.
    std::vector<std::unique_ptr<pg_connection>> sessions;
    int replica_port = 0;
    for (int i = 0; i < 8 && sessions.size() < 2; ++i) {
        auto c = std::make_unique<pg_connection>(px.read_conninfo());
        REQUIRE(c->ok());
        const int port = which_member(*c)->port;
        if (replica_port == 0) {
            replica_port = port;
        }
        if (port == replica_port) {
            sessions.push_back(std::move(c));
        }
    }
    REQUIRE(sessions.size() == 2);
    auto& idle = *sessions[0];
    auto& in_tx = *sessions[1];
    REQUIRE(in_tx.scalar("BEGIN"));
    REQUIRE(in_tx.scalar("SELECT count(*) FROM pg_class"));
    const int in_tx_port = in_tx.local_port();
    const std::string removed = "pg" + std::to_string(replica_port - lab_int("LAB_PG_PORT_BASE"));
    // The same file without that member, and SIGHUP.
    std::ifstream in(px.config_path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto line = text.find("  - {name: " + removed + ",");
    REQUIRE(line != std::string::npos);
    text.erase(line, text.find('\n', line) - line + 1);
    px.write_config(text);
    const auto t0 = std::chrono::steady_clock::now();
    px.signal(SIGHUP);
    // The idle one: FATAL 57P01 naming the reason, within drain/2 and a fresh session's grace.
    const auto told = wait_until_ended(idle, 6s);
    INFO(told << px.log());
    CHECK(told.find("FATAL:  terminating connection: patroxy: a reload removed member '" + removed + "'") !=
          std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < 6s);
    // The one in a transaction finishes it (and is closed right after).
    CHECK(in_tx.scalar("SELECT 1") == std::optional<std::string>("1"));
    CHECK(in_tx.scalar("COMMIT"));
    // Ended right after its COMMIT's answer; the FATAL may come in the same
    // read as that answer, where libpq keeps it unshown: patroxy's log says.
    const auto after_commit = wait_until_ended(in_tx, 3s);
    INFO(after_commit << px.log());
    CHECK(!after_commit.empty());
    CHECK(poll_until([&] {
        return std::regex_search(px.log(), std::regex("client=127\\.0\\.0\\.1:" + std::to_string(in_tx_port) +
                                                      " .*reason=drained detail=\"a reload removed member '" +
                                                      removed + "'\""));
    }, 2s));
    // New read sessions avoid the removed member.
    for (int i = 0; i < 4; ++i) {
        pg_connection c(px.read_conninfo());
        REQUIRE(c.ok());
        CHECK(which_member(c)->port != replica_port);
    }
    CHECK(std::regex_search(px.log(), std::regex("reload: configuration generation 2 applied")));
}
