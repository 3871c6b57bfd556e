#pragma once
// Patroni's keys as a stand-in etcd serves them (v3 JSON gateway), and the
// configuration and loop helpers the DCS tests share.

#include "conf/config.hpp"
#include "health/dcs.hpp"

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace patroxy::testing {

using namespace std::chrono_literals;
using json = nlohmann::json;

inline const std::string prefix = "/service/batman/";

// A kv as etcd's gateway writes it: base64, int64 as strings, defaults left out.
inline json kv(const std::string& key, const std::string& value, std::int64_t revision) {
    json k = {{"key", health::etcd3::base64_encode(prefix + key)},
              {"create_revision", std::to_string(revision)},
              {"mod_revision", std::to_string(revision)},
              {"version", "1"}};
    if (!value.empty()) {
        k["value"] = health::etcd3::base64_encode(value);
    }
    return k;
}

inline json header(std::int64_t revision) {
    return {{"cluster_id", "14841639068965178418"}, {"member_id", "10276657743932975437"},
            {"revision", std::to_string(revision)}, {"raft_term", "2"}};
}

inline std::string member_value(const std::string& api, int pg_port, const std::string& role,
                         const std::string& state = "running") {
    return json{{"conn_url", "postgres://127.0.0.1:" + std::to_string(pg_port) + "/postgres"},
                {"api_url", api + "/patroni"},
                {"state", state},
                {"role", role},
                {"version", "3.0.2"}}
        .dump();
}

inline std::string range_body(std::int64_t revision, std::vector<json> kvs) {
    json doc = {{"header", header(revision)}, {"count", std::to_string(kvs.size())}};
    if (!kvs.empty()) {
        doc["kvs"] = kvs;
    }
    return doc.dump();
}

inline std::string created_line(std::int64_t revision) {
    return json{{"result", {{"header", header(revision)}, {"created", true}}}}.dump();
}

inline std::string put_line(std::int64_t revision, const std::string& key, const std::string& value) {
    return json{{"result", {{"header", header(revision)}, {"events", {{{"kv", kv(key, value, revision)}}}}}}}.dump();
}

inline std::string delete_line(std::int64_t revision, const std::string& key) {
    json k = {{"key", health::etcd3::base64_encode(prefix + key)}, {"mod_revision", std::to_string(revision)}};
    return json{{"result", {{"header", header(revision)}, {"events", {{{"type", "DELETE"}, {"kv", k}}}}}}}.dump();
}

inline conf::dcs_config dcs_for(std::vector<std::uint16_t> ports) {
    conf::dcs_config d;
    d.enabled = true;
    d.type = conf::dcs_config::kind::etcd3;
    d.ns = "/service";
    d.scope = "batman";
    d.timeout = 300ms;
    d.resync_interval = 60s;
    for (auto p : ports) {
        d.hosts.emplace_back("127.0.0.1", p);
    }
    return d;
}

// A monitor's configuration: scope batman on one stand-in etcd, quick checks, fall 2.
inline std::shared_ptr<conf::config> monitor_config(std::uint16_t etcd_port) {
    auto cfg = std::make_shared<conf::config>();
    cfg->scope = "batman";
    cfg->dcs = dcs_for({etcd_port});
    cfg->health.interval = 200ms;
    cfg->health.fast_interval = 100ms;
    cfg->health.timeout = 150ms;
    cfg->health.fall = 2;
    cfg->listeners = conf::config::default_listeners();
    return cfg;
}

// A port nobody listens on (bound, never listening, closed).
inline std::uint16_t closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// Runs `ioc` until `done` holds or `limit` passes.
inline bool run_until(boost::asio::io_context& ioc, const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) {
            return true;
        }
        ioc.restart();
        ioc.run_for(10ms);
    }
    return done();
}

}  // namespace patroxy::testing
