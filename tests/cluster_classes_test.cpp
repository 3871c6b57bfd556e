// Routing classes on the real lab cluster: a sync listener under Patroni's
// synchronous_mode, and a replica whose replay is stopped (its startup process
// frozen: Patroni resumes a pg_wal_replay_pause() within a loop) leaving the read
// listener with its sessions drained at their idle points.
#include "support/http_get.hpp"
#include "support/lab.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <sstream>
#include <thread>

using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

int pg_port_of(const std::string& member) {
    return lab_int("LAB_PG_PORT_BASE") + std::stoi(member.substr(2));
}

std::string served_by(pg_connection& c) {
    const auto port = c.scalar("SELECT current_setting('port')");
    return port ? *port : "?";
}

// Puts back what a test changed in the lab, however the test ends.
struct lab_undo {
    std::vector<std::string> commands;
    ~lab_undo() {
        for (auto it = commands.rbegin(); it != commands.rend(); ++it) {
            lab(*it);
        }
    }
};

const patroxy_ports ports{15000, 15001, 17000};

std::string classes_yaml() {
    return "listeners:\n"
           "  - {name: master, role: write, bind: 127.0.0.1, port: 15000}\n"
           "  - {name: replicas, role: read, bind: 127.0.0.1, port: 15001, max_lag: {bytes: 1MB}}\n"
           "  - {name: sync, role: sync, bind: 127.0.0.1, port: 15002}\n"
           "  - {name: async, role: async, bind: 127.0.0.1, port: 15003}\n";
}

std::string on_port(const patroxy_process& px, int port) { return px.conninfo(port); }

// patroxy's routing decisions and drains, for a failure's message.
std::string routing_lines(const patroxy_process& px) {
    std::istringstream in(px.log());
    std::string line, out;
    std::vector<std::string> kept;
    while (std::getline(in, line)) {
        if (line.find("routing generation") != std::string::npos || line.find("drain") != std::string::npos ||
            line.find("left listener") != std::string::npos) {
            kept.push_back(line);
        }
    }
    for (std::size_t i = kept.size() > 25 ? kept.size() - 25 : 0; i < kept.size(); ++i) {
        out += kept[i] + "\n";
    }
    return out;
}

}  // namespace

TEST_CASE("synchronous_mode: the sync listener reaches only the sync standby and follows when it changes", "[cluster][classes]") {
    lab_undo undo;
    undo.commands.push_back("sync-mode off");
    REQUIRE(lab("sync-mode on").first == 0);
    const auto sync = lab("sync-standby").second;
    REQUIRE(!sync.empty());
    patroxy_process px("health: {interval: 1s, fast_interval: 500ms}\ntimeouts: {drain: 4s}\n", ports, classes_yaml());
    REQUIRE(px.wait_ready());
    INFO("sync standby " << sync);
    REQUIRE(poll_until([&] {
        pg_connection c(on_port(px, 15002));
        return c.ok() && served_by(c) == std::to_string(pg_port_of(sync));
    }, 10s));
    for (int i = 0; i < 4; ++i) {
        pg_connection s(on_port(px, 15002));
        REQUIRE(s.ok());
        CHECK(served_by(s) == std::to_string(pg_port_of(sync)));
        pg_connection a(on_port(px, 15003));
        REQUIRE(a.ok());
        CHECK(served_by(a) != std::to_string(pg_port_of(sync)));
        CHECK(a.scalar("SELECT pg_is_in_recovery()::text") == std::optional<std::string>("true"));
    }
    pg_connection before(on_port(px, 15002));
    REQUIRE(before.ok());
    REQUIRE(served_by(before) == std::to_string(pg_port_of(sync)));

    // nosync on the sync standby: Patroni moves the role to the other replica.
    undo.commands.push_back("clear-tags " + sync);
    REQUIRE(lab("set-tag " + sync + " nosync true").first == 0);
    std::string next;
    REQUIRE(poll_until([&] {
        next = lab("sync-standby").second;
        return !next.empty() && next != sync;
    }, 60s, 500ms));
    INFO("new sync standby " << next);
    REQUIRE(poll_until([&] {
        pg_connection c(on_port(px, 15002));
        return c.ok() && served_by(c) == std::to_string(pg_port_of(next));
    }, 10s));
    for (int i = 0; i < 4; ++i) {
        pg_connection s(on_port(px, 15002));
        REQUIRE(s.ok());
        CHECK(served_by(s) == std::to_string(pg_port_of(next)));
    }
    // The session on the old one: still a healthy replica, so drained at its
    // idle point with 57P01 (its next query sees it), not cut mid-query.
    bool told = false;   // within the soft drain's spread (half of timeouts.drain) and a check or two
    for (int i = 0; i < 40 && !told; ++i) {
        told = !before.scalar("SELECT 1");
        if (!told) {
            std::this_thread::sleep_for(250ms);
        }
    }
    CHECK(told);
    // Told why (in patroxy's log: libpq may show the FATAL as a notice).
    CHECK(poll_until([&] {
        const auto log = px.log();
        return log.find("reason=drained") != std::string::npos &&
               log.find("left listener 'sync': no longer in class 'sync'") != std::string::npos;
    }, 5s));
}

TEST_CASE("a replica whose replay is paused leaves the read listener: idle sessions drained, a transaction finishes first", "[cluster][classes]") {
    const auto leader = lab("leader").second;
    REQUIRE(!leader.empty());
    const auto replica = leader == "pg1" ? std::string("pg2") : std::string("pg1");
    const auto other = std::string("pg") + std::to_string(3 - std::stoi(replica.substr(2)) - std::stoi(leader.substr(2)));
    INFO("leader " << leader << ", paused " << replica << ", other " << other);
    patroxy_process px("health: {interval: 1s, fast_interval: 500ms}\ntimeouts: {drain: 4s}\n", ports, classes_yaml());
    REQUIRE(px.wait_ready());
    const auto on_replica = std::to_string(pg_port_of(replica));
    std::vector<std::unique_ptr<pg_connection>> there;
    for (int i = 0; i < 12 && there.size() < 2; ++i) {
        auto c = std::make_unique<pg_connection>(px.read_conninfo());
        REQUIRE(c->ok());
        if (served_by(*c) == on_replica) {
            there.push_back(std::move(c));
        }
    }
    REQUIRE(there.size() == 2);
    auto& idle = *there[0];
    auto& in_tx = *there[1];
    REQUIRE(in_tx.scalar("BEGIN"));
    REQUIRE(in_tx.scalar("SELECT 1"));

    lab_undo undo;
    undo.commands.push_back("replay resume " + replica);
    REQUIRE(lab("replay pause " + replica).first == 0);
    pg_connection w(px.write_conninfo());
    REQUIRE(w.ok());
    REQUIRE(w.scalar("CREATE TABLE IF NOT EXISTS patroxy_lag (x int)"));
    REQUIRE(w.scalar("INSERT INTO patroxy_lag SELECT generate_series(1, 200000)"));   // ~7 MB of WAL

    bool told = false;   // a check or two, then the drain's spread (half of timeouts.drain)
    for (int i = 0; i < 80 && !told; ++i) {
        told = !idle.scalar("SELECT 1");
        if (!told) {
            std::this_thread::sleep_for(250ms);
        }
    }
    INFO(routing_lines(px));
    REQUIRE(told);   // what it was told is checked below in patroxy's log (libpq may show a notice instead)
    // The transaction was left alone, and ends when it says so.
    CHECK(in_tx.scalar("SELECT 2") == std::optional<std::string>("2"));
    CHECK(in_tx.scalar("COMMIT"));
    bool after_commit = false;
    for (int i = 0; i < 20 && !after_commit; ++i) {
        after_commit = !in_tx.scalar("SELECT 3");
        if (!after_commit) {
            std::this_thread::sleep_for(250ms);
        }
    }
    CHECK(after_commit);
    // libpq prints an unsolicited FATAL that comes while it is idle as a
    // notice and then reports the closed connection; patroxy's log says how
    // each of the two ended: drained, for that reason.
    const auto drained = [&] {
        std::istringstream in(px.log());
        std::string line;
        int n = 0;
        while (std::getline(in, line)) {
            n += line.find("member=" + replica) != std::string::npos && line.find("reason=drained") != std::string::npos &&
                 line.find("left listener 'replicas'") != std::string::npos;
        }
        return n;
    };
    CHECK(poll_until([&] { return drained() >= 2; }, 5s));
    // New reads avoid it while it lags.
    for (int i = 0; i < 4; ++i) {
        pg_connection c(px.read_conninfo());
        REQUIRE(c.ok());
        CHECK(served_by(c) == std::to_string(pg_port_of(other)));
    }
    // Replay resumed: back after it is under half the limit for `rise` checks.
    REQUIRE(lab("replay resume " + replica).first == 0);
    CHECK(poll_until([&] {
        pg_connection c(px.read_conninfo());
        return c.ok() && served_by(c) == on_replica;
    }, 20s, 200ms));
    w.scalar("DROP TABLE IF EXISTS patroxy_lag");
}

namespace {

// Every line of `text` moved right by `by` spaces (a top-level section put inside a list entry).
std::string indented(const std::string& text, int by) {
    std::istringstream in(text);
    std::string line, out;
    while (std::getline(in, line)) {
        out += std::string(static_cast<std::size_t>(by), ' ') + line + "\n";
    }
    return out;
}

}  // namespace

TEST_CASE("two lab clusters behind one patroxy: each write port follows its own leader, the page shows both", "[cluster][classes]") {
    lab_undo undo;
    undo.commands.push_back("second down");
    REQUIRE(lab("second up").first == 0);
    const auto env = lab_env();
    const auto second_scope = env.at("LAB_SECOND_SCOPE");
    // The first cluster from the file, the second discovered from the DCS (its own scope on the same etcd).
    std::ostringstream yaml;
    yaml << "clusters:\n  - name: main\n    scope: " << env.at("LAB_SCOPE") << "\n    members:\n";
    for (int i = 0; i < 3; ++i) {
        yaml << "      - {name: pg" << i << ", host: 127.0.0.1, port: " << lab_int("LAB_PG_PORT_BASE") + i
             << ", api: \"http://127.0.0.1:" << lab_int("LAB_API_PORT_BASE") + i << "\"}\n";
    }
    yaml << "  - name: second\n    scope: " << second_scope << "\n"
         << indented(lab_dcs_yaml("  scope: " + second_scope + "\n"), 4)
         << "health: {interval: 1s, fast_interval: 500ms}\n"
         << "listeners:\n"
         << "  - {name: main-rw, cluster: main, role: write, bind: 127.0.0.1, port: 15000}\n"
         << "  - {name: main-ro, cluster: main, role: read, bind: 127.0.0.1, port: 15001}\n"
         << "  - {name: second-rw, cluster: second, role: write, bind: 127.0.0.1, port: 15010}\n"
         << "  - {name: second-ro, cluster: second, role: read, bind: 127.0.0.1, port: 15011}\n"
         << "stats: {bind: 127.0.0.1, port: 17000}\n";
    patroxy_child px(yaml.str());
    const auto conninfo = [&](int port) {
        return "host=127.0.0.1 port=" + std::to_string(port) + " user=" + env.at("LAB_SUPERUSER") + " password=" +
               env.at("LAB_SUPERUSER_PASSWORD") + " dbname=" + env.at("LAB_DATABASE") + " connect_timeout=5 sslmode=disable";
    };
    // pgb0, pgb1 come after the three members and the two spares.
    const auto port_of = [&](const std::string& member) {
        const int index = member.rfind("pgb", 0) == 0 ? 5 + std::stoi(member.substr(3)) : std::stoi(member.substr(2));
        return std::to_string(lab_int("LAB_PG_PORT_BASE") + index);
    };
    const auto writes_on = [&](int port) -> std::string {
        pg_connection c(conninfo(port));
        if (!c.ok() || !c.scalar("CREATE TABLE IF NOT EXISTS two_clusters (n int); INSERT INTO two_clusters VALUES (1)")) {
            return "";
        }
        return served_by(c);
    };
    const auto main_leader = lab("leader").second;
    auto second_leader = lab("second leader").second;
    REQUIRE(!main_leader.empty());
    REQUIRE(!second_leader.empty());
    INFO(px.log().substr(px.log().size() > 4000 ? px.log().size() - 4000 : 0));
    REQUIRE(poll_until([&] { return writes_on(15010) == port_of(second_leader); }, 20s));
    CHECK(writes_on(15000) == port_of(main_leader));
    {
        pg_connection r(conninfo(15011));
        REQUIRE(r.ok());
        CHECK(served_by(r) != port_of(second_leader));   // the second cluster's replica
        CHECK(r.scalar("SELECT pg_is_in_recovery()") == std::optional<std::string>("t"));
    }
    const auto page = http_get(17000, "/status.json");
    REQUIRE(page.status == 200);
    const auto j = nlohmann::json::parse(page.body);
    REQUIRE(j["clusters"].size() == 2);
    CHECK(j["clusters"][1]["name"] == "second");
    CHECK(j["clusters"][1]["leader"] == second_leader);
    CHECK(j["clusters"][1]["leader_source"] == "dcs");
    CHECK(j["clusters"][0]["leader"] == main_leader);

    // A switchover in the second cluster moves its write port only.
    const auto moved = lab("second switchover").second;
    REQUIRE(!moved.empty());
    REQUIRE(moved != second_leader);
    CHECK(poll_until([&] { return writes_on(15010) == port_of(moved); }, 15s));
    CHECK(writes_on(15000) == port_of(main_leader));
}
