// health.handback_guard: the lock leaves a leader whose Patroni (before
// 3.0.3) hangs, and that Patroni may write the key back when it resumes
// (patroni/patroni#2689). New writes wait and the old leader's sessions are
// paused until it takes the lock back, answers demoted, or the guard ends.
// Stand-in etcd and Patroni APIs on 127.0.0.1, the monitor alone and patroxy.
#include "health/monitor.hpp"
#include "proxy/balancer.hpp"
#include "support/dcs_fixtures.hpp"
#include "support/fake_etcd.hpp"
#include "support/fake_patroni.hpp"
#include "support/proxy_harness.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <mutex>

#include <sys/resource.h>

using namespace patroxy;
using namespace patroxy::health;
using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

std::string answer_of(const std::string& role, const std::string& version) {
    return fake_patroni::answer(role, R"(, "patroni": {"version": ")" + version + R"(", "scope": "batman"})");
}

// CPU time of this process (patroxy's threads and the stand-ins), user and system.
std::chrono::microseconds process_cpu() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    const auto us = [](const timeval& t) { return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec); };
    return us(u.ru_utime) + us(u.ru_stime);
}

// The keys a stand-in etcd serves, kept current, and a watch that replays
// from its start revision as etcd's does: a watch that breaks under load
// starts over with a range and a watch, and misses nothing.
class cluster_keys {
public:
    explicit cluster_keys(fake_etcd& etcd) : etcd_(etcd) {
        etcd_.on("/v3/kv/range", [this](const fake_etcd::seen&) {
            std::lock_guard lock(mutex_);
            std::vector<json> kvs;
            for (const auto& [key, value] : values_) {
                kvs.push_back(kv(key, value, revision_));
            }
            return std::optional<fake_etcd::answer>({200, range_body(revision_, kvs), {}});
        });
        etcd_.stream("/v3/watch", [this](const fake_etcd::seen& request) {
            std::lock_guard lock(mutex_);
            std::int64_t from = revision_ + 1;
            try {
                from = std::stoll(json::parse(request.body)["create_request"]["start_revision"].get<std::string>());
            } catch (const std::exception&) {
            }
            std::vector<std::string> lines{created_line(revision_)};
            for (const auto& [revision, line] : history_) {
                if (revision >= from) {
                    lines.push_back(line);
                }
            }
            return lines;
        });
    }
    void seed(const std::string& key, const std::string& value) {
        std::lock_guard lock(mutex_);
        values_[key] = value;
    }
    void put(const std::string& key, const std::string& value) {
        std::lock_guard lock(mutex_);
        values_[key] = value;
        ++revision_;
        history_.emplace_back(revision_, put_line(revision_, key, value));
        etcd_.push(history_.back().second);
    }
    void remove(const std::string& key) {
        std::lock_guard lock(mutex_);
        values_.erase(key);
        ++revision_;
        history_.emplace_back(revision_, delete_line(revision_, key));
        etcd_.push(history_.back().second);
    }

private:
    fake_etcd& etcd_;
    std::mutex mutex_;
    std::map<std::string, std::string> values_;
    std::int64_t revision_ = 30;
    std::vector<std::pair<std::int64_t, std::string>> history_;
};

// Two members on one stand-in etcd, pg0 holding the key; the monitor alone.
struct two_members {
    explicit two_members(const std::string& version, std::optional<std::chrono::milliseconds> guard = std::nullopt)
        : api0(answer_of("master", version)), api1(answer_of("replica", version)) {
        keys.seed("leader", "pg0");
        keys.seed("members/pg0", member_value(api0.url(), 25432, "master"));
        keys.seed("members/pg1", member_value(api1.url(), 25433, "replica"));
        keys.seed("config", R"({"ttl":30,"loop_wait":10})");
        cfg = monitor_config(etcd.port());
        cfg->dcs.timeout = 1s;
        cfg->health.handback_guard = guard;
        mon = std::make_unique<monitor>(ioc, cfg, [](topology_ptr) {});
        mon->start();
    }
    ~two_members() {
        mon->stop();
        ioc.restart();
        ioc.poll();
    }
    std::string leader() const {
        const auto t = mon->latest();
        return t->leader ? t->members[*t->leader].name : std::string("none");
    }
    member_id id_of(const std::string& name) const {
        for (const auto& m : mon->latest()->members) {
            if (m.name == name) {
                return m.id;
            }
        }
        return 0;
    }
    bool until(const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
        return run_until(ioc, done, limit);
    }
    // pg0's API hangs past fall; its lease expires (its member key goes,
    // unless `lease_expires` is false: a switchover), then the key moves to
    // pg1, which answers as primary.
    void hang_and_move(bool lease_expires = true) {
        REQUIRE(until([&] {
            const auto t = mon->latest();
            return leader() == "pg0" && t->members.size() == 2 && t->members[0].up && t->members[1].up;
        }, 5s));
        api0.set_mode(fake_patroni::mode::hang);
        REQUIRE(until([&] { return !mon->latest()->members[0].up; }));
        api1.set_body(answer_of("master", version_of_api1));
        if (lease_expires) {
            keys.remove("members/pg0");
        }
        keys.put("leader", "pg1");
        REQUIRE(until([&] { return mon->latest()->lock_holder == "pg1"; }));
    }

    fake_patroni api0;
    fake_patroni api1;
    std::string version_of_api1 = "3.0.2";
    fake_etcd etcd;
    cluster_keys keys{etcd};
    std::shared_ptr<conf::config> cfg;
    boost::asio::io_context ioc;
    std::unique_ptr<monitor> mon;
};

}  // namespace

TEST_CASE("handback guard: the lock leaves a hung Patroni 3.0.2 leader: new writes wait and its sessions pause until it "
          "takes the lock back",
          "[dcs][handback]") {
    two_members c("3.0.2");
    c.hang_and_move();
    const auto pg0 = c.id_of("pg0");
    // pg1 leads by the key and answers as primary, yet nothing is sent there:
    // the old leader may write the key back.
    REQUIRE(c.until([&] { return c.leader() == "pg1"; }));
    c.until([] { return false; }, 300ms);
    auto t = c.mon->latest();
    CHECK(t->fenced == pg0);
    CHECK(t->position(pg0));       // its member key went with the lease, its slot stays
    CHECK(t->writes_held);
    CHECK(t->class_of(c.cfg->listeners[0].name)->routed().empty());
    CHECK(!t->keeps_write(pg0));   // not kept as the leader...
    // ...and its Patroni resumes and takes the key back: its sessions go on, writes go to it.
    c.api0.set_mode(fake_patroni::mode::answer);
    c.keys.put("leader", "pg0");
    c.keys.put("members/pg0", member_value(c.api0.url(), 25432, "master"));   // its new lease
    REQUIRE(c.until([&] { return c.leader() == "pg0" && !c.mon->latest()->fenced; }));
    t = c.mon->latest();
    CHECK(!t->writes_held);
    CHECK(t->keeps_write(pg0));
    const auto& routed = t->class_of(c.cfg->listeners[0].name)->routed();
    REQUIRE(routed.size() == 1);
    CHECK(t->members[routed[0]].id == pg0);
    // Its slot stays once the guard is over (the key is back).
    c.until([] { return false; }, 700ms);
    CHECK(c.leader() == "pg0");
}

TEST_CASE("handback guard: ends when the old leader answers demoted or when it has lasted its time", "[dcs][handback]") {
    SECTION("demoted") {
        two_members c("3.0.2");
        c.hang_and_move();
        REQUIRE(c.until([&] { return c.mon->latest()->fenced.has_value(); }));
        c.api0.set_body(answer_of("replica", "3.0.2"));
        c.api0.set_mode(fake_patroni::mode::answer);
        REQUIRE(c.until([&] { return !c.mon->latest()->fenced; }));
        const auto t = c.mon->latest();
        CHECK(c.leader() == "pg1");
        CHECK(!t->writes_held);
        const auto& routed = t->class_of(c.cfg->listeners[0].name)->routed();
        REQUIRE(routed.size() == 1);
        CHECK(t->members[routed[0]].name == "pg1");
        // Its key went with its lease: now that it is known, its slot goes too.
        REQUIRE(c.until([&] { return c.mon->latest()->members.size() == 1; }));
        CHECK(c.leader() == "pg1");
    }
    SECTION("still claiming the lead it lost: the guard holds") {
        two_members c("3.0.2");
        c.hang_and_move();
        REQUIRE(c.until([&] { return c.mon->latest()->fenced.has_value(); }));
        c.api0.set_mode(fake_patroni::mode::answer);  // "master, running" again, the key still pg1's
        REQUIRE(c.until([&] { return c.mon->latest()->members[0].up; }));
        c.until([] { return false; }, 300ms);
        CHECK(c.mon->latest()->fenced.has_value());
        CHECK(c.mon->latest()->writes_held);
    }
    SECTION("its time") {
        two_members c("3.0.2", 1500ms);
        c.hang_and_move();
        REQUIRE(c.until([&] { return c.mon->latest()->fenced.has_value(); }));
        const auto began = std::chrono::steady_clock::now();
        REQUIRE(c.until([&] { return !c.mon->latest()->fenced; }, 4s));
        const auto lasted = std::chrono::steady_clock::now() - began;
        CHECK(lasted > 1s);
        CHECK(lasted < 3s);
        CHECK(c.leader() == "pg1");
        CHECK(!c.mon->latest()->writes_held);
    }
}

TEST_CASE("handback guard: none for Patroni 3.0.3 and later and none after a switchover or when turned off",
          "[dcs][handback]") {
    SECTION("3.0.3") {
        two_members c("3.0.3");
        c.version_of_api1 = "3.0.3";
        c.hang_and_move();
        REQUIRE(c.until([&] { return c.leader() == "pg1"; }));
        c.until([] { return false; }, 300ms);
        CHECK(!c.mon->latest()->fenced);
        CHECK(!c.mon->latest()->writes_held);
    }
    SECTION("the old leader's member key is still there: it let go itself (a switchover)") {
        two_members c("3.0.2");
        c.hang_and_move(false);
        REQUIRE(c.until([&] { return c.leader() == "pg1"; }));
        c.until([] { return false; }, 300ms);
        CHECK(!c.mon->latest()->fenced);
        CHECK(!c.mon->latest()->writes_held);
    }
    SECTION("off") {
        two_members c("3.0.2", 0ms);
        c.hang_and_move();
        REQUIRE(c.until([&] { return c.leader() == "pg1"; }));
        c.until([] { return false; }, 300ms);
        CHECK(!c.mon->latest()->fenced);
        CHECK(!c.mon->latest()->writes_held);
    }
}

TEST_CASE("through patroxy: sessions on a hung 3.0.2 leader that lost its lock are paused and not cut: they go on "
          "when the leader takes the lock back and are cut without its answer when it is demoted",
          "[dcs][handback][component]") {
    const bool demoted = GENERATE(false, true);
    // wait_for_backend 0: a held write still waits, rechecking every 500 ms, not in a busy loop.
    const int wait_ms = GENERATE(1000, 0);
    INFO((demoted ? "demoted" : "takes the lock back") << ", wait_for_backend " << wait_ms << " ms");
    std::vector<std::unique_ptr<fake_member>> members;
    members.push_back(std::make_unique<fake_member>("pg0", "master"));
    members.push_back(std::make_unique<fake_member>("pg1", "replica"));
    members[0]->api.set_body(answer_of("master", "3.0.2"));
    members[1]->api.set_body(answer_of("replica", "3.0.2"));
    const auto key = [&](std::size_t i, const std::string& role) {
        return member_value(members[i]->api.url(), members[i]->pg->port(), role);
    };
    fake_etcd etcd;
    cluster_keys keys(etcd);
    keys.seed("leader", "pg0");
    keys.seed("members/pg0", key(0, "master"));
    keys.seed("members/pg1", key(1, "replica"));
    auto cfg = config_for(members);
    cfg.scope = "batman";
    cfg.dcs = dcs_for({etcd.port()});
    cfg.dcs.timeout = 1s;
    cfg.health.fall = 2;
    cfg.health.rise = 1;   // a demoted pg0 is an up replica at its first answer: `any` would keep it
    cfg.timeouts.wait_for_backend = std::chrono::milliseconds(wait_ms);   // the guard holds a new write past it
    cfg.listeners[1].role = conf::listener_role::any;   // leader and replicas, the leader first
    cfg.listeners[1].balance = conf::balance_mode::first;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] {
        const auto t = p.topology();
        return t->leader == std::optional<std::size_t>(0) && t->leader_source == lock_observation::source::dcs &&
               t->members[0].up && t->members[1].up;
    }));
    raw_client writer(p.port(0), 500ms);
    REQUIRE(writer.startup().server_name == "pg0");
    const packet ping{'x'};
    REQUIRE(writer.send(ping));
    REQUIRE(writer.read_byte() == std::uint8_t{'x'});
    raw_client anyone(p.port(1), 500ms);
    REQUIRE(anyone.startup().server_name == "pg0");

    members[0]->api.set_mode(fake_patroni::mode::hang);
    REQUIRE(eventually([&] { return !p.topology()->members[0].up; }, 3s));
    members[1]->api.set_body(answer_of("master", "3.0.2"));
    keys.remove("members/pg0");   // its lease expired
    keys.put("leader", "pg1");
    REQUIRE(eventually([&] { return p.topology()->fenced.has_value() && p.topology()->leader == std::optional<std::size_t>(1); }));
    std::this_thread::sleep_for(300ms);  // the workers have it
    // The paused session: what it sends is not relayed, nothing comes back, it stays open.
    for (auto* c : {&writer, &anyone}) {
        REQUIRE(c->send(ping));
        CHECK(!c->read_byte());
        CHECK(!c->closed_by_peer());
    }
    // A new write waits, past wait_for_backend: not sent to the new key holder, not refused.
    const auto cpu_before = process_cpu();
    auto held = startup_in_background(p.port(0));
    CHECK(held.wait_for(1500ms) == std::future_status::timeout);
    CHECK(process_cpu() - cpu_before < 700ms);   // a worker spinning on its timer takes a core: ~1.5 s

    if (!demoted) {
        members[0]->api.set_mode(fake_patroni::mode::answer);
        keys.put("leader", "pg0");
        // The ping it held goes through now, and so does the waiting client, to pg0.
        for (auto* c : {&writer, &anyone}) {
            CHECK(c->read_byte() == std::uint8_t{'x'});
            REQUIRE(c->send(ping));
            CHECK(c->read_byte() == std::uint8_t{'x'});
        }
        check_routed_to(held, "pg0");
    } else {
        members[0]->api.set_body(answer_of("replica", "3.0.2"));
        members[0]->api.set_mode(fake_patroni::mode::answer);
        // Cut, and the echo it held never reaches the client; the waiting client goes to pg1.
        // The `any` session too, though a running replica could keep it.
        for (auto* c : {&writer, &anyone}) {
            bool closed = false;
            bool leaked = false;
            for (int i = 0; i < 8 && !closed; ++i) {
                if (c->read_byte()) {
                    leaked = true;
                } else {
                    closed = c->closed_by_peer();
                }
            }
            CHECK(closed);
            CHECK(!leaked);
        }
        check_routed_to(held, "pg1");
    }
}
