// Leadership from Patroni's DCS, on the real lab cluster: the leader key as
// the write fence (a frozen or killed Patroni, a switchover), members
// discovered from their keys, etcd endpoints failing, frozen and compacted,
// and a double claim of primary. Run on the lab's etcd v3 with the other
// cluster tests, and again with Patroni on etcd v2 (tests/dcs_variant_test.sh).

#include "support/fake_patroni.hpp"
#include "support/http_get.hpp"
#include "support/lab.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <fstream>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

using namespace patroxy::testing;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

const patroxy_process::ports dcs_ports{15100, 15101, 17100};

json status_json(const patroxy_process& px) {
    const auto a = http_get(px.port_numbers().stats, "/status.json");
    return a.status == 200 ? json::parse(a.body, nullptr, false) : json();
}

std::string member_name(int pg_port) { return "pg" + std::to_string(pg_port - lab_int("LAB_PG_PORT_BASE")); }

/// Writers through the write port: `sessions` long-lived ones writing every
/// `every`, and one that opens a new connection for each write every `every_new`.
class writers {
public:
    writers(const patroxy_process& px, int sessions, std::chrono::milliseconds every, std::chrono::milliseconds every_new)
        : px_(px) {
        {
            pg_connection c(px.write_conninfo());
            REQUIRE(c.scalar("CREATE TABLE IF NOT EXISTS dcs_probe (writer int, n int, at timestamptz DEFAULT clock_timestamp())"));
        }
        for (int i = 0; i < sessions; ++i) {
            threads_.emplace_back([this, i, every] { long_lived(i, every); });
        }
        threads_.emplace_back([this, every_new] { one_per_write(every_new); });
    }
    ~writers() { stop(); }
    void stop() {
        stop_ = true;
        for (auto& t : threads_) {
            if (t.joinable()) {
                t.join();
            }
        }
    }
    int ok() const { return ok_; }
    int failed() const { return failed_; }
    int reconnects() const { return reconnects_; }
    std::vector<std::string> errors() const {
        std::lock_guard lock(m_);
        return errors_;
    }

private:
    void failure(const std::string& what) {
        ++failed_;
        std::lock_guard lock(m_);
        if (errors_.size() < 20) {
            errors_.push_back(what);
        }
    }
    void long_lived(int id, std::chrono::milliseconds every) {
        auto c = std::make_unique<pg_connection>(px_.write_conninfo("application_name=dcs-writer-" + std::to_string(id)));
        for (int n = 0; !stop_ && n < 100000; ++n) {
            if (!c->ok()) {
                failure("session " + std::to_string(id) + " lost: " + c->error());
                ++reconnects_;
                c = std::make_unique<pg_connection>(px_.write_conninfo());
            } else if (c->scalar("INSERT INTO dcs_probe (writer, n) VALUES (" + std::to_string(id) + ", " +
                                 std::to_string(n) + ")")) {
                ++ok_;
            } else {
                failure("session " + std::to_string(id) + ": " + c->last_error());
                ++reconnects_;
                c = std::make_unique<pg_connection>(px_.write_conninfo());
            }
            std::this_thread::sleep_for(every);
        }
    }
    void one_per_write(std::chrono::milliseconds every) {
        for (int n = 0; !stop_ && n < 100000; ++n) {
            pg_connection c(px_.write_conninfo());
            if (c.ok() && c.scalar("INSERT INTO dcs_probe (writer, n) VALUES (-1, " + std::to_string(n) + ")")) {
                ++ok_;
            } else {
                failure("new connection: " + (c.ok() ? c.last_error() : c.error()));
            }
            std::this_thread::sleep_for(every);
        }
    }

    const patroxy_process& px_;
    std::vector<std::thread> threads_;
    std::atomic<bool> stop_{false};
    std::atomic<int> ok_{0};
    std::atomic<int> failed_{0};
    std::atomic<int> reconnects_{0};
    mutable std::mutex m_;
    std::vector<std::string> errors_;
};

/// Raises the cluster's ttl for a test and puts it back after.
struct ttl_for_test {
    explicit ttl_for_test(int seconds) { ok = lab("set-ttl " + std::to_string(seconds)).first == 0; }
    ~ttl_for_test() { lab("set-ttl " + lab_env().at("LAB_TTL")); }
    bool ok = false;
};

int count_of(const std::string& text, const std::string& what) {
    int n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
        ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("the leader's Patroni frozen for 15 s below ttl: no session cut, no write failed", "[cluster][dcs]") {
    ttl_for_test ttl(30);
    REQUIRE(ttl.ok);
    patroxy_process px(members_from::dcs, "health: {interval: 1s, fast_interval: 300ms, timeout: 500ms, fall: 3}\n",
                       dcs_ports);
    REQUIRE(px.wait_ready());
    const auto leader = member_name(leader_port());
    writers w(px, 4, 100ms, 200ms);
    std::this_thread::sleep_for(1s);
    REQUIRE(lab("freeze-patroni " + leader).first == 0);
    std::this_thread::sleep_for(15s);
    lab("thaw-patroni " + leader);
    std::this_thread::sleep_for(2s);
    w.stop();
    const auto log = px.log();
    INFO(log);
    std::string errors;
    for (const auto& e : w.errors()) {
        errors += e + "\n";
    }
    INFO(errors);
    // The frozen API made the member DOWN (the REST view alone would have cut everything)...
    CHECK(log.find(leader + " is DOWN after failed checks") != std::string::npos);
    // ...but the key still named it: nothing was cut, nothing failed.
    CHECK(w.failed() == 0);
    CHECK(w.reconnects() == 0);
    CHECK(w.ok() > 600);
    CHECK(log.find("reason=backend_down") == std::string::npos);
    const auto st = status_json(px);
    CHECK(st["cluster"]["leader"] == leader);
    CHECK(st["cluster"]["leader_source"] == "dcs");
}

TEST_CASE("the leader's Patroni killed: its sessions stay until the key expires, then are cut, and writes go to the new leader",
          "[cluster][dcs][dcs-secure]") {
    patroxy_process px(members_from::dcs, "health: {interval: 1s, fast_interval: 300ms, timeout: 500ms, fall: 3}\n",
                       dcs_ports);
    REQUIRE(px.wait_ready());
    const int old_port = leader_port();
    pg_connection held(px.write_conninfo("application_name=held-until-key-expires"));
    REQUIRE(held.ok());
    REQUIRE(which_member(held)->port == old_port);
    const int held_port = held.local_port();
    const auto [rc, killed] = lab("kill-leader-patroni");
    REQUIRE(rc == 0);
    const auto killed_at = std::chrono::steady_clock::now();
    // The key lives on for up to ttl (10 s in the lab) after Patroni's last
    // renewal: for the first 6 s the session keeps working, though its API is gone.
    for (int i = 0; i < 12; ++i) {
        std::this_thread::sleep_for(500ms);
        INFO("after " << (i + 1) * 500 << " ms");
        REQUIRE(held.scalar("SELECT 1"));
    }
    CHECK(px.log().find(killed + " is DOWN after failed checks") != std::string::npos);
    // Then another member takes the key: the orphaned primary's session is cut
    // and new writes reach the new leader, never a member in recovery.
    int in_recovery = 0;
    REQUIRE(poll_until([&] {
        pg_connection c(px.write_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        in_recovery += w && w->in_recovery ? 1 : 0;
        return w && !w->in_recovery && w->port != old_port;
    }, 40s, 200ms));
    CHECK(in_recovery == 0);
    INFO(px.log());
    CHECK(poll_until([&] {
        return std::regex_search(px.log(), std::regex("client=127\\.0\\.0\\.1:" + std::to_string(held_port) +
                                                      " .*app=held-until-key-expires .*reason=backend_down"));
    }, 5s));
    CHECK(!held.scalar("SELECT 1"));
    CHECK(std::chrono::steady_clock::now() - killed_at > 6s);
    bring_back(killed);
}

TEST_CASE("a switchover with a writer on the write port: no write fails, and writes resume within 0.1 s of the promotion",
          "[cluster][dcs][dcs-secure]") {
    patroxy_process px(members_from::dcs, "timeouts: {wait_for_backend: 15s}\n", dcs_ports);
    REQUIRE(px.wait_ready());
    const int old_port = leader_port();
    int candidate_port = 0;
    for (int i = 0; i < 3; ++i) {
        if (lab_int("LAB_PG_PORT_BASE") + i != old_port) {
            candidate_port = lab_int("LAB_PG_PORT_BASE") + i;
            break;
        }
    }
    {
        pg_connection c(px.write_conninfo());
        REQUIRE(c.scalar("CREATE TABLE IF NOT EXISTS dcs_switch (n int, at timestamptz DEFAULT clock_timestamp())"));
    }
    // The promotion as the candidate's PostgreSQL sees it (polled every 2 ms
    // on a connection of its own: it is promoted in place).
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> promoted_ns{0};
    std::thread probe([&] {
        pg_connection c(member_conninfo(candidate_port - lab_int("LAB_PG_PORT_BASE")));
        for (int i = 0; !stop && i < 30000; ++i) {
            if (c.scalar("SELECT pg_is_in_recovery()::text") == std::optional<std::string>("false")) {
                promoted_ns = std::chrono::steady_clock::now().time_since_epoch().count();
                return;
            }
            std::this_thread::sleep_for(2ms);
        }
    });
    // One write per new connection, back to back (each waits in patroxy while no leader can take it).
    struct attempt {
        std::chrono::steady_clock::time_point start, end;
        bool ok;
        int port;
        std::string error;
    };
    std::vector<attempt> attempts;
    std::thread writer([&] {
        for (int n = 0; !stop && n < 20000; ++n) {
            attempt a{std::chrono::steady_clock::now(), {}, false, 0, {}};
            pg_connection c(px.write_conninfo());
            if (c.ok()) {
                const auto port = c.scalar("INSERT INTO dcs_switch (n) VALUES (" + std::to_string(n) +
                                           ") RETURNING current_setting('port')");
                a.ok = port.has_value();
                a.port = port ? std::stoi(*port) : 0;
                a.error = port ? "" : c.last_error();
            } else {
                a.error = c.error();
            }
            a.end = std::chrono::steady_clock::now();
            attempts.push_back(a);
            std::this_thread::sleep_for(5ms);
        }
    });
    std::this_thread::sleep_for(1s);
    const auto [rc, out] = lab("switchover " + member_name(candidate_port));
    std::this_thread::sleep_for(2s);
    stop = true;
    writer.join();
    probe.join();
    REQUIRE(rc == 0);
    REQUIRE(promoted_ns != 0);
    const std::chrono::steady_clock::time_point promoted{std::chrono::steady_clock::duration{promoted_ns.load()}};
    int failed = 0;
    std::string errors;
    std::optional<std::chrono::steady_clock::time_point> first_new;
    for (const auto& a : attempts) {
        if (!a.ok) {
            ++failed;
            errors += a.error + "\n";
        } else if (a.port == candidate_port && !first_new) {
            first_new = a.end;
        }
    }
    INFO(px.log());
    INFO(errors);
    CHECK(failed == 0);
    REQUIRE(first_new);
    const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(*first_new - promoted);
    WARN("first write acknowledged by the new leader " << after.count() << " ms after its promotion");
    CHECK(after < 100ms);
    // While the switchover was announced, new writes waited: the page said so.
    CHECK(px.log().find("writes held") != std::string::npos);
    REQUIRE(lab("wait-healthy 60").first == 0);
}

TEST_CASE("a fourth member added to the running cluster is routed on the read port within 2 s, and once gone, never",
          "[cluster][dcs]") {
    patroxy_process px(members_from::dcs, "health: {interval: 1s, fast_interval: 300ms}\n", dcs_ports);
    REQUIRE(px.wait_ready());
    const int spare_port = lab_int("LAB_PG_PORT_BASE") + 3;
    REQUIRE(lab("add pg3").first == 0);
    struct cleanup {
        ~cleanup() { lab("remove pg3"); }
    } remove_at_end;
    // Its first streaming report: the leader's pg_stat_replication shows it streaming.
    const auto leader = leader_port();
    pg_connection on_leader(member_conninfo(leader - lab_int("LAB_PG_PORT_BASE")));
    REQUIRE(poll_until([&] {
        return on_leader.scalar("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg3' AND state = "
                                "'streaming'") == std::optional<std::string>("1");
    }, 120s, 50ms));
    const auto streaming_at = std::chrono::steady_clock::now();
    REQUIRE(poll_until([&] {
        pg_connection c(px.read_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        return w && w->port == spare_port;
    }, 10s, 50ms));
    const auto took = std::chrono::steady_clock::now() - streaming_at;
    WARN("routed " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms after streaming");
    CHECK(took < 2s);
    const auto log = px.log();
    CHECK(log.find("pg3: added from the DCS") != std::string::npos);
    CHECK(status_json(px)["patroxy"]["config_generation"] == 1);  // no reload, no file edit

    // Stopped, and its key expired: removed, and no session goes there.
    REQUIRE(lab("remove pg3").first == 0);
    REQUIRE(poll_until([&] { return px.log().find("pg3: removed (its key left the DCS)") != std::string::npos; }, 10s));
    for (int i = 0; i < 20; ++i) {
        pg_connection c(px.read_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        REQUIRE(w);
        CHECK(w->port != spare_port);
    }
    for (const auto& m : status_json(px)["members"]) {
        CHECK(m["name"] != "pg3");
    }
}

TEST_CASE("etcd: an endpoint killed, all frozen, back again: routing goes on, the page tells, nothing routes twice",
          "[cluster][dcs][dcs-secure]") {
    // Stale after 3 s of silence (the lab's ttl is 10 s); a resync every second keeps a quiet view fresh.
    patroxy_process px(members_from::dcs, "health: {interval: 1s, fast_interval: 300ms, timeout: 1s}\n", dcs_ports,
                       "  stale_after: 3s\n  resync_interval: 1s\n  timeout: 1s\n");
    REQUIRE(px.wait_ready());
    REQUIRE(poll_until([&] { return status_json(px)["dcs"]["connected"] == true; }, 10s));
    const auto routed_before = count_of(px.log(), "routing generation");
    // Patroni may demote its leader itself when etcd re-elects under load
    // (its key update times out): then there is nothing for patroxy to keep.
    const auto demotions = [] {
        int n = 0;
        for (const char* m : {"pg0", "pg1", "pg2"}) {
            std::ifstream in(lab_env().at("LAB_DIR") + "/" + m + "/patroni.log");
            for (std::string line; std::getline(in, line);) {
                n += line.find("emoting self") != std::string::npos || line.find("demot") != std::string::npos ? 1 : 0;
            }
        }
        return n;
    };
    const int demoted_before = demotions();
    const std::string endpoint = status_json(px)["dcs"]["endpoint"];
    const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
    const int index = (port - lab_int("LAB_ETCD_PORT_BASE")) / 2;
    writers w(px, 2, 100ms, 200ms);

    // The endpoint in use dies: the watcher moves to another, routing stays.
    REQUIRE(lab("etcd-stop " + std::to_string(index)).first == 0);
    REQUIRE(poll_until([&] {
        const auto d = status_json(px)["dcs"];
        return d["connected"] == true && d["endpoint"] != endpoint;
    }, 10s));
    REQUIRE(lab("etcd-start " + std::to_string(index)).first == 0);

    // Every endpoint frozen: stale after the silence, routing from the members' answers.
    REQUIRE(lab("etcd-freeze").first == 0);
    const bool went_stale = poll_until([&] { return status_json(px)["dcs"]["fresh"] == false; }, 40s, 200ms);
    const auto page = http_get(px.port_numbers().stats, "/");
    const auto frozen_status = status_json(px);
    std::this_thread::sleep_for(2s);
    REQUIRE(lab("etcd-thaw").first == 0);
    const bool patroni_demoted = demotions() > demoted_before;
    CHECK(went_stale);
    CHECK(page.body.find("STALE") != std::string::npos);
    CHECK(frozen_status["cluster"]["leader_source"] != "dcs");
    if (patroni_demoted) {
        WARN("Patroni demoted its leader itself during the etcd faults: routing and writes are not patroxy's to keep");
    }
    CHECK((patroni_demoted || !frozen_status["cluster"]["leader"].is_null()));
    CHECK(frozen_status["dcs"]["last_error"] != "");
    // etcd back: the watcher resumes.
    REQUIRE(poll_until([&] { return status_json(px)["dcs"]["fresh"] == true; }, 30s, 200ms));
    std::this_thread::sleep_for(1s);
    w.stop();
    const auto log = px.log();
    INFO(log);
    std::string errors;
    for (const auto& e : w.errors()) {
        errors += e + "\n";
    }
    INFO(errors);
    if (!patroni_demoted) {
        CHECK(w.failed() == 0);
        // The leader never changed: the source moved (dcs -> members -> dcs), the routing did not.
        CHECK(count_of(log, "routing generation") == routed_before);
    }
    REQUIRE(lab("wait-healthy 60").first == 0);
}

TEST_CASE("etcd compacts the watched history: the watcher goes on and still follows a switchover", "[cluster][dcs][v3][dcs-secure]") {
    if (lab_env().at("LAB_DCS") != "etcd3") {
        SUCCEED("compaction is a v3 matter");
        return;
    }
    patroxy_process px(members_from::dcs, "", dcs_ports);
    REQUIRE(px.wait_ready());
    const auto [rc, rev] = lab("etcd-compact");
    REQUIRE(rc == 0);
    REQUIRE(lab("switchover").first == 0);
    const int now_leader = leader_port();
    REQUIRE(poll_until([&] {
        pg_connection c(px.write_conninfo());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        return w && w->port == now_leader && !w->in_recovery;
    }, 20s, 100ms));
    CHECK(status_json(px)["dcs"]["revision"].get<std::int64_t>() > std::stoll(rev));
    REQUIRE(lab("wait-healthy 60").first == 0);
}

TEST_CASE("a double claim of primary staged with a stand-in API: writes follow the leader key", "[cluster][dcs]") {
    // A replica's REST answers are replaced by a stand-in that claims primary.
    const int leader = leader_port();
    int replica = 0;
    for (int i = 0; i < 3; ++i) {
        if (lab_int("LAB_PG_PORT_BASE") + i != leader) {
            replica = lab_int("LAB_PG_PORT_BASE") + i;
            break;
        }
    }
    fake_patroni liar(fake_patroni::answer("master"));
    std::ostringstream members;
    members << "members:\n";
    for (int i = 0; i < 3; ++i) {
        const int pg = lab_int("LAB_PG_PORT_BASE") + i;
        members << "  - {name: pg" << i << ", host: 127.0.0.1, port: " << pg << ", api: \""
                << (pg == replica ? liar.url() : "http://127.0.0.1:" + std::to_string(lab_int("LAB_API_PORT_BASE") + i))
                << "\"}\n";
    }
    std::ostringstream yaml;
    yaml << "scope: " << lab_env().at("LAB_SCOPE") << "\n" << lab_dcs_yaml() << members.str()
         << "listeners:\n  - {name: master, role: write, bind: 127.0.0.1, port: 15100}\n"
         << "  - {name: replicas, role: read, bind: 127.0.0.1, port: 15101}\n"
         << "stats: {bind: 127.0.0.1, port: 17100}\n";
    patroxy_child px(yaml.str());
    const auto write = [&] {
        const auto env = lab_env();
        return "host=127.0.0.1 port=15100 user=" + env.at("LAB_SUPERUSER") + " password=" +
               env.at("LAB_SUPERUSER_PASSWORD") + " dbname=postgres connect_timeout=5 sslmode=disable";
    };
    REQUIRE(poll_until([&] {
        pg_connection c(write());
        return c.ok();
    }, 20s, 200ms));
    for (int i = 0; i < 10; ++i) {
        pg_connection c(write());
        const auto w = c.ok() ? which_member(c) : std::nullopt;
        REQUIRE(w);
        CHECK(w->port == leader);
        CHECK(!w->in_recovery);
    }
    const auto st = json::parse(http_get(17100, "/status.json").body);
    CHECK(st["cluster"]["split_brain"] == false);
    CHECK(st["cluster"]["leader_source"] == "dcs");
    CHECK(px.log().find("all claim leadership; the lock names " + member_name(leader)) != std::string::npos);
}
