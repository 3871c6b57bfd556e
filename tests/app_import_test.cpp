// `patroxy import` (app/import.hpp) on the configurations the seed describes
// (HAProxy listen master/replicas with /primary or /master and /replica
// checks, keepalived primary and standby) and on Patroni's own sample
// haproxy.cfg: each output compared with its expected file, notes included,
// and validated by the real loader.

#include "app/import.hpp"

#include "conf/loader.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace patroxy;

namespace {

std::string slurp(const std::string& name) {
    std::ifstream in(std::string(PATROXY_SOURCE_DIR "/tests/data/import/") + name, std::ios::binary);
    REQUIRE(in);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

app::import::source input(const std::string& name) { return {name, slurp(name)}; }

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) {
        s += l + "\n";
    }
    return s;
}

bool has(const std::vector<std::string>& notes, const std::string& part) {
    return std::any_of(notes.begin(), notes.end(), [&](const auto& n) { return n.find(part) != std::string::npos; });
}

}  // namespace

TEST_CASE("import writes the expected patroxy.yml and notes for the seed and Patroni's sample", "[app][import]") {
    struct sample {
        std::string haproxy, keepalived, expected;
    };
    const auto s = GENERATE(sample{"seed-haproxy.cfg", "seed-keepalived-primary.conf", "seed-primary"},
                            sample{"seed-haproxy.cfg", "seed-keepalived-standby.conf", "seed-standby"},
                            sample{"seed-haproxy-master.cfg", "", "seed-master"},
                            sample{"patroni-haproxy.cfg", "", "patroni"});
    INFO(s.expected);
    const auto r = app::import::convert(
        input(s.haproxy), s.keepalived.empty() ? std::nullopt : std::optional<app::import::source>(input(s.keepalived)));
    CHECK(r.yaml == slurp(s.expected + ".expected.yml"));
    CHECK(joined(r.notes) == slurp(s.expected + ".expected.notes"));
    CHECK_NOTHROW(conf::load_text(r.yaml, s.expected));
}

TEST_CASE("import: the seed's listeners, members, checks and VIP as patroxy has them", "[app][import]") {
    const auto primary = app::import::convert(input("seed-haproxy.cfg"), input("seed-keepalived-primary.conf"));
    const auto cfg = conf::load_text(primary.yaml, "primary");
    REQUIRE(cfg.listeners.size() == 2);
    CHECK(cfg.listeners[0].name == "master");
    CHECK(cfg.listeners[0].role == conf::listener_role::write);   // /primary
    CHECK(cfg.listeners[1].role == conf::listener_role::read);    // /replica
    CHECK(cfg.listeners[1].port == 5001);
    CHECK(cfg.listeners[0].maxconn == 10000);
    REQUIRE(cfg.members.size() == 3);
    CHECK(cfg.members[2].host == "192.168.0.92");
    CHECK(cfg.members[2].api.port == 8008);                       // check port 8008
    CHECK(cfg.health.interval == std::chrono::seconds(3));        // inter 3s
    CHECK(cfg.health.fall == 3);
    CHECK(cfg.health.rise == 2);
    CHECK(cfg.health.timeout == std::chrono::seconds(15));        // timeout check
    CHECK(cfg.timeouts.connect == std::chrono::seconds(5));
    CHECK(cfg.timeouts.wait_for_backend == std::chrono::seconds(5));  // timeout queue
    CHECK(cfg.timeouts.client_idle == std::chrono::minutes(60));
    CHECK(cfg.timeouts.retries == 2);
    CHECK(cfg.maxconn == 4000);
    CHECK(cfg.stats.port == 7000);
    CHECK(cfg.vip.enabled);
    CHECK(cfg.vip.address == "192.168.0.110");
    CHECK(cfg.vip.prefix == 24);
    CHECK(cfg.vip.virtual_router_id == 51);
    CHECK(cfg.vip.priority == 101);
    CHECK(cfg.vip.advert_interval == std::chrono::seconds(1));
    CHECK(cfg.vip.preempt);
    CHECK(cfg.vip.track_weight == 2);                             // vrrp_script weight
    CHECK(has(primary.notes, "seed-keepalived-primary.conf:16: not carried over: authentication"));
    CHECK(has(primary.notes, "seed-keepalived-primary.conf:12: not carried over: state MASTER"));

    const auto standby = app::import::convert(input("seed-haproxy.cfg"), input("seed-keepalived-standby.conf"));
    const auto b = conf::load_text(standby.yaml, "standby");
    CHECK(b.vip.priority == 100);
    CHECK_FALSE(b.vip.preempt);                                   // nopreempt
    CHECK(b.vip.preempt_delay == std::chrono::seconds(30));
    CHECK(b.vip.advert_interval == std::chrono::milliseconds(500));  // advert_int 0.5
    REQUIRE(b.vip.unicast_peers.size() == 1);
    CHECK(b.vip.unicast_peers[0] == "192.168.0.100");
    CHECK(b.vip.track_weight == 20);                              // track_script weight overrides
    CHECK(has(standby.notes, "seed-keepalived-standby.conf:17: not carried over: unicast_src_ip"));
}

TEST_CASE("import: /master and /replica?lag=, stats auth, per-listener members and what is left out", "[app][import]") {
    const auto r = app::import::convert(input("seed-haproxy-master.cfg"), std::nullopt);
    const auto cfg = conf::load_text(r.yaml, "master");
    CHECK(cfg.listeners[0].role == conf::listener_role::write);   // /master
    CHECK(cfg.listeners[1].role == conf::listener_role::read);
    CHECK(cfg.health.max_lag_bytes == 16u * 1024 * 1024);
    CHECK(cfg.health.fast_interval == std::chrono::milliseconds(500));
    CHECK(cfg.listeners[0].members == std::vector<std::string>{"pg0", "pg1"});
    CHECK(cfg.listeners[1].members == std::vector<std::string>{"pg1", "pg2"});
    REQUIRE(cfg.stats.auth);
    CHECK(cfg.stats.auth->username == "admin");
    CHECK(cfg.stats.auth->password == "s3cret");
    CHECK_FALSE(cfg.vip.enabled);
    CHECK(has(r.notes, "seed-haproxy-master.cfg:29: not carried over: balance leastconn"));
    CHECK(has(r.notes, "seed-haproxy-master.cfg:23: not carried over: server option 'maxconn 200'"));
    CHECK(has(r.notes, "seed-haproxy-master.cfg:15: not carried over: stats refresh 10s"));
}

TEST_CASE("import: Patroni's sample (frontend + backend, a bare option httpchk) is one write listener", "[app][import]") {
    const auto r = app::import::convert(input("patroni-haproxy.cfg"), std::nullopt);
    const auto cfg = conf::load_text(r.yaml, "patroni");
    REQUIRE(cfg.listeners.size() == 1);
    CHECK(cfg.listeners[0].name == "ft_postgresql");
    CHECK(cfg.listeners[0].role == conf::listener_role::write);   // OPTIONS / answers 200 on the leader only
    CHECK(cfg.listeners[0].port == 5000);
    REQUIRE(cfg.members.size() == 2);
    CHECK(cfg.members[1].port == 5433);
    CHECK(cfg.members[1].api.port == 8009);
    CHECK(cfg.maxconn == 100);
}

TEST_CASE("import survives any bytes and names what it cannot read", "[app][import]") {
    std::string junk;
    std::uint32_t x = 12345;
    for (int i = 0; i < 4000; ++i) {
        x = x * 1103515245u + 12345u;
        junk += static_cast<char>((x >> 16) & 0xff);
    }
    const auto r = app::import::convert({"junk.cfg", junk}, app::import::source{"junk.conf", junk + "{{{ }}}} {"});
    CHECK_FALSE(r.yaml.empty());
    const auto odd = app::import::convert({"odd.cfg", "listen x\n  bind :notaport\n  server a\n  timeout connect soon\n"},
                                          std::nullopt);
    CHECK(has(odd.notes, "odd.cfg:2: not carried over: :notaport (no port)"));
    CHECK(has(odd.notes, "odd.cfg:4: not carried over: timeout connect soon (unreadable time)"));
}
