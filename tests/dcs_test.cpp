// The etcd codecs (health/dcs.cpp) on answers captured from the lab's real
// etcd 3.4 and Patroni 3.0.2 (tests/data/etcd*): base64 keys and values,
// int64 as strings, default fields left out, error bodies, v2's nodes.

#include "health/dcs.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace patroxy::health;
using namespace std::chrono_literals;

namespace {

std::string data(const std::string& name) {
    std::ifstream in(PATROXY_SOURCE_DIR "/tests/data/" + name);
    REQUIRE(in);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
            out.push_back(line);
        }
    }
    return out;
}

const std::string prefix = "/service/postgres-cluster/";

}  // namespace

TEST_CASE("etcd3: base64 both ways, and the end of a prefix range", "[dcs]") {
    CHECK(etcd3::base64_encode("/service/postgres-cluster/") == "L3NlcnZpY2UvcG9zdGdyZXMtY2x1c3Rlci8=");
    CHECK(etcd3::base64_decode("L3NlcnZpY2UvcG9zdGdyZXMtY2x1c3Rlci8=") == "/service/postgres-cluster/");
    CHECK(etcd3::base64_decode("") == "");
    CHECK(!etcd3::base64_decode("not base64!"));
    CHECK(!etcd3::base64_decode("abc"));  // not a multiple of 4
    CHECK(etcd3::range_end("/service/a/") == "/service/a0");
    CHECK(etcd3::range_end(std::string("a\xff", 2)) == "b");
    CHECK(dcs_prefix("/service", "postgres-cluster") == prefix);
    CHECK(dcs_prefix("/postgresql-common/", "15-main") == "/postgresql-common/15-main/");
    CHECK(dcs_prefix("service", "x") == "/service/x/");
}

TEST_CASE("etcd3: a real range of Patroni 3.0.2's keys", "[dcs]") {
    std::string why;
    const auto v = etcd3::parse_range(data("etcd3-range.json"), prefix, why);
    INFO(why);
    REQUIRE(v);
    CHECK(v->revision == 147);  // int64 as a string
    CHECK(v->leader == "pg0");
    CHECK(v->ttl == 10s);
    CHECK(!v->failover);
    REQUIRE(v->members.size() == 3);
    const auto& pg0 = v->members.at("pg0");
    CHECK(pg0.host == "127.0.0.1");
    CHECK(pg0.port == 15432);
    CHECK(pg0.api_url == "http://127.0.0.1:18008/patroni");
    CHECK(pg0.role == "master");
    CHECK(pg0.state == "running");
    CHECK(pg0.timeline == 1);
    CHECK(pg0.xlog_location == 325547688u);
    CHECK(v->members.at("pg2").port == 15434);
    // Another scope's prefix sees none of it.
    const auto other = etcd3::parse_range(data("etcd3-range.json"), "/service/other/", why);
    REQUIRE(other);
    CHECK(!other->leader);
    CHECK(other->members.empty());
}

TEST_CASE("etcd3: a range with no keys at all leaves out kvs and count", "[dcs]") {
    std::string why;
    const auto v = etcd3::parse_range(R"({"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"}})",
                                      prefix, why);
    REQUIRE(v);
    CHECK(v->revision == 5);
    CHECK(v->members.empty());
}

TEST_CASE("etcd3: error bodies are errors with etcd's words", "[dcs]") {
    std::string why;
    CHECK(!etcd3::parse_range(data("etcd3-auth-error.json"), prefix, why));
    CHECK(why.find("invalid auth token") != std::string::npos);
    CHECK(!etcd3::parse_range("<html>502 Bad Gateway</html>", prefix, why));
    CHECK(!etcd3::parse_range(R"({"header":{"revision":"x"}})", prefix, why));
    CHECK(!etcd3::parse_range(std::string(10000, '[') + std::string(10000, ']'), prefix, why));
    const auto token = etcd3::parse_auth(data("etcd3-auth.json"), why);
    REQUIRE(token);
    CHECK(token->find('.') != std::string::npos);
    CHECK(!etcd3::parse_auth(data("etcd3-auth-failed.json"), why));
    CHECK(why.find("authentication failed") != std::string::npos);
}

TEST_CASE("etcd3: a real watch: created, then puts, with the revision moving", "[dcs]") {
    std::string why;
    auto v = *etcd3::parse_range(data("etcd3-range.json"), prefix, why);
    v.revision = 150;
    const auto ls = lines(data("etcd3-watch.ndjson"));
    REQUIRE(ls.size() >= 3);
    const auto created = etcd3::apply_watch_line(v, ls[0], prefix);
    CHECK(created.what == etcd3::watch_line::kind::created);
    CHECK(created.revision == 151);
    const auto events = etcd3::apply_watch_line(v, ls[1], prefix);
    CHECK(events.what == etcd3::watch_line::kind::events);
    CHECK(v.revision == 151);
}

TEST_CASE("etcd3: a real switchover as the watch saw it: failover key, leader deleted, taken, failover cleaned up", "[dcs]") {
    std::string why;
    auto v = *etcd3::parse_range(data("etcd3-switchover-range.json"), prefix, why);
    REQUIRE(v.leader);
    const auto first = *v.leader;
    bool saw_failover = false;
    bool saw_no_leader = false;
    for (const auto& line : lines(data("etcd3-switchover-watch.ndjson"))) {
        const auto r = etcd3::apply_watch_line(v, line, prefix);
        REQUIRE(r.what != etcd3::watch_line::kind::bad);
        saw_failover = saw_failover || v.failover.has_value();
        saw_no_leader = saw_no_leader || !v.leader;
    }
    CHECK(saw_failover);
    CHECK(saw_no_leader);
    REQUIRE(v.leader);
    CHECK(*v.leader != first);
    CHECK(!v.failover);  // cleaned up with an empty object
    CHECK(v.members.at(*v.leader).role == "master");
}

TEST_CASE("etcd3: a watch from a compacted revision is canceled with the compact revision", "[dcs]") {
    dcs_view v;
    const auto r = etcd3::apply_watch_line(v, lines(data("etcd3-compacted.ndjson")).back(), prefix);
    CHECK(r.what == etcd3::watch_line::kind::canceled);
    CHECK(r.why.find("compacted") != std::string::npos);
}

TEST_CASE("etcd2: a real recursive GET, a set, an expire and a cleared index", "[dcs]") {
    std::string why;
    const auto get = data("etcd2-get.json");
    auto v = etcd2::parse_get(get, 41, prefix, why);  // its X-Etcd-Index
    INFO(why);
    REQUIRE(v);
    CHECK(v->revision == 41);
    CHECK(v->leader.has_value());
    CHECK(v->members.size() == 3);
    CHECK(v->ttl == 10s);
    for (const auto& [name, m] : v->members) {
        CHECK(m.port >= 15432);
        CHECK(!m.api_url.empty());
    }
    const auto set = etcd2::apply_watch(*v, data("etcd2-wait-set.json"), prefix);
    CHECK(set.what == etcd2::watch_result::kind::event);
    CHECK(set.index == 42);
    CHECK(v->revision == set.index);
    CHECK(v->leader == "pg0");  // the leader's ttl refreshed by compareAndSwap
    const auto expire = etcd2::apply_watch(*v, data("etcd2-wait-expire.json"), prefix);
    CHECK(expire.what == etcd2::watch_result::kind::event);
    CHECK(v->members.count("pg2") == 0);  // its Patroni frozen: the member key expired
    const auto cleared = etcd2::apply_watch(*v, data("etcd2-cleared.json"), prefix);
    CHECK(cleared.what == etcd2::watch_result::kind::cleared);
    // Key not found: an empty cluster, not an error.
    const auto empty = etcd2::parse_get(R"({"errorCode":100,"message":"Key not found","cause":"/service/x","index":7})", 7,
                                        prefix, why);
    REQUIRE(empty);
    CHECK(empty->members.empty());
    CHECK(!etcd2::parse_get("[]", 1, prefix, why));
}

TEST_CASE("Patroni's failover key: leader, member, scheduled_at, {} is none", "[dcs]") {
    dcs_view v;
    dcs_put(v, "failover", R"({"leader":"pg0","member":"pg1"})");
    REQUIRE(v.failover);
    CHECK(v.failover->leader == "pg0");
    CHECK(v.failover->member == "pg1");
    CHECK(!v.failover->scheduled_at);
    dcs_put(v, "failover", R"({"member":"pg2","scheduled_at":"2026-12-01T12:30:00+01:00"})");
    REQUIRE(v.failover);
    CHECK(v.failover->scheduled_at == parse_iso8601("2026-12-01T11:30:00Z"));
    dcs_put(v, "failover", "{}");
    CHECK(!v.failover);
    dcs_put(v, "failover", "garbage");
    CHECK(!v.failover);
    dcs_delete(v, "failover");
    CHECK(!v.failover);
}

TEST_CASE("ISO 8601 times as Patroni writes them", "[dcs]") {
    const auto epoch = std::chrono::system_clock::time_point{};
    CHECK(parse_iso8601("1970-01-01T00:00:00Z") == epoch);
    CHECK(parse_iso8601("1970-01-01T01:00:00+01:00") == epoch);
    CHECK(parse_iso8601("1970-01-01T00:00:01.5Z") == epoch + 1500ms);
    CHECK(parse_iso8601("2016-01-14T10:09:57.1394Z").has_value());
    CHECK(parse_iso8601("1970-01-01 00:00:00").has_value());
    CHECK(!parse_iso8601("1970-13-01T00:00:00Z"));
    CHECK(!parse_iso8601("1970-02-30T00:00:00Z"));
    CHECK(!parse_iso8601("yesterday"));
    CHECK(!parse_iso8601("1970-01-01T00:00:00Zjunk"));
}

TEST_CASE("conn_url: host and port, IPv6, user, defaults", "[dcs]") {
    std::string host;
    std::uint16_t port = 0;
    CHECK(parse_conn_url("postgres://127.0.0.1:15432/postgres", host, port));
    CHECK(host == "127.0.0.1");
    CHECK(port == 15432);
    CHECK(parse_conn_url("postgresql://u@[2001:db8::1]:5433/db", host, port));
    CHECK(host == "2001:db8::1");
    CHECK(port == 5433);
    CHECK(parse_conn_url("postgres://pg0.example.org/postgres", host, port));
    CHECK(host == "pg0.example.org");
    CHECK(port == 5432);
    CHECK(!parse_conn_url("http://x:1", host, port));
    CHECK(!parse_conn_url("postgres://:99999/", host, port));
}

TEST_CASE("member keys: Patroni 4's primary, unreadable values, nested names", "[dcs]") {
    dcs_view v;
    dcs_put(v, "members/pg9", R"({"conn_url":"postgres://10.0.0.9:5432/postgres","api_url":"https://10.0.0.9:8008/patroni",)"
                              R"("role":"primary","state":"running","tags":{"nofailover":true,"clonefrom":"x"}})");
    REQUIRE(v.members.count("pg9"));
    CHECK(v.members["pg9"].role == "primary");
    CHECK(v.members["pg9"].tags.at("nofailover") == "true");
    CHECK(v.members["pg9"].tags.at("clonefrom") == "x");
    dcs_put(v, "members/bad", "not json");
    CHECK(v.members["bad"].host.empty());
    dcs_put(v, "members/a/b", "{}");
    CHECK(!v.members.count("a/b"));
    dcs_delete(v, "members/pg9");
    CHECK(!v.members.count("pg9"));
}
