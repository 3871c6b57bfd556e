#pragma once
// Helpers for tests on the real lab cluster (lab/cluster.sh): its settings,
// a patroxy child process in front of it, and libpq connections.

#include "support/child_patroxy.hpp"

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <poll.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace patroxy::testing {

/// lab/lab.env as KEY=VALUE (a ${VAR:-default} takes its default).
inline std::map<std::string, std::string> lab_env() {
    std::ifstream in(PATROXY_SOURCE_DIR "/lab/lab.env");
    std::map<std::string, std::string> env;
    const std::regex assign(R"(^([A-Z_]+)=(.*)$)");
    const std::regex fallback(R"(^\$\{[A-Z_]+:-(.*)\}$)");
    std::string line;
    while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_match(line, m, assign)) {
            std::string value = m[2];
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
                value = value.substr(1, value.size() - 2);
            }
            std::smatch d;
            if (std::regex_match(value, d, fallback)) {
                // ${VAR:-default}: the environment's value, as the shell would take it.
                const char* set = std::getenv(std::string(m[1]).c_str());
                value = set != nullptr && *set != '\0' ? std::string(set) : std::string(d[1]);
            }
            env[m[1]] = value;
        }
    }
    return env;
}

inline int lab_int(const std::string& key) { return std::stoi(lab_env().at(key)); }

/// Runs a lab/cluster.sh command; returns its stdout (trimmed) and exit code.
inline std::pair<int, std::string> lab(const std::string& args) {
    const std::string cmd = PATROXY_SOURCE_DIR "/lab/cluster.sh " + args + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[256];
    while (p && std::fgets(buf, sizeof buf, p)) {
        out += buf;
    }
    const int status = p ? ::pclose(p) : -1;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
        out.pop_back();
    }
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds limit,
                       std::chrono::milliseconds every = std::chrono::milliseconds(100)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(every);
    }
    return done();
}

/// A libpq connection, closed on destruction.
class pg_connection {
public:
    explicit pg_connection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {}
    ~pg_connection() {
        if (conn_ != nullptr) {
            PQfinish(conn_);
        }
    }
    /// The caller finished the connection itself.
    void forget() { conn_ = nullptr; }
    pg_connection(const pg_connection&) = delete;
    pg_connection& operator=(const pg_connection&) = delete;

    bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
    std::string error() const { return PQerrorMessage(conn_); }
    PGconn* raw() const { return conn_; }

    /// First column of the first row, or nullopt on error.
    std::optional<std::string> scalar(const std::string& sql) {
        PGresult* r = PQexec(conn_, sql.c_str());
        std::optional<std::string> out;
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
            out = PQgetvalue(r, 0, 0);
        } else if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            out = "";
        } else {
            last_error_ = PQresultErrorMessage(r);
            const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            last_sqlstate_ = state ? state : "";
        }
        PQclear(r);
        return out;
    }
    const std::string& last_error() const { return last_error_; }
    const std::string& last_sqlstate() const { return last_sqlstate_; }
    /// The local port of this connection, as patroxy's log shows the client.
    int local_port() const {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getsockname(PQsocket(conn_), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
            return -1;
        }
        return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }

private:
    PGconn* conn_;
    std::string last_error_;
    std::string last_sqlstate_;
};

/// Where a test's patroxy listens (away from the demo's 5000/5001/7000).
struct patroxy_ports {
    int write = 15000;
    int read = 15001;
    int stats = 17000;
};

/// Where a test's patroxy learns the members from: the file (REST checks and
/// GET /cluster only), Patroni's DCS alone (members discovered), or both (the
/// file's three, leadership from the DCS's leader key).
enum class members_from { file, dcs, both };

/// The lab's DCS as patroxy's `dcs:` section (etcd3 or etcd v2 as LAB_DCS says,
/// TLS and the read-only user with LAB_ETCD_SECURE=1); `extra` goes inside it.
inline std::string lab_dcs_yaml(const std::string& extra = "") {
    const auto env = lab_env();
    const bool secure = env.at("LAB_ETCD_SECURE") == "1";
    const int base = std::stoi(env.at("LAB_ETCD_PORT_BASE"));
    std::ostringstream d;
    d << "dcs:\n  type: " << env.at("LAB_DCS") << "\n  namespace: " << env.at("LAB_NAMESPACE") << "\n  hosts: [";
    for (int i = 0; i < 3; ++i) {
        d << (i ? ", " : "") << "\"" << (secure ? "https://" : "") << "127.0.0.1:" << base + 2 * i << "\"";
    }
    d << "]\n";
    if (secure) {
        const auto tls = env.at("LAB_DIR") + "/tls/";
        d << "  username: " << env.at("LAB_ETCD_READER") << "\n  password: " << env.at("LAB_ETCD_READER_PASSWORD")
          << "\n  tls: {ca: " << tls << "ca.crt, cert: " << tls << "client.crt, key: " << tls << "client.key}\n";
    }
    d << extra;
    return d.str();
}

/// The lab's members and the listeners and stats port a test's patroxy uses, as YAML.
inline std::string lab_config(const std::string& extra_yaml, const patroxy_ports& p, const std::string& listeners_yaml,
                              members_from from = members_from::file, const std::string& dcs_extra = "") {
    const auto env = lab_env();
    std::ostringstream cfg;
    cfg << "scope: " << env.at("LAB_SCOPE") << "\n";
    if (from != members_from::file) {
        cfg << lab_dcs_yaml(dcs_extra);
    }
    if (from != members_from::dcs) {
        cfg << "members:\n";
        const int pg = std::stoi(env.at("LAB_PG_PORT_BASE"));
        const int api = std::stoi(env.at("LAB_API_PORT_BASE"));
        for (int i = 0; i < 3; ++i) {
            cfg << "  - {name: pg" << i << ", host: 127.0.0.1, port: " << pg + i << ", api: \"http://127.0.0.1:"
                << api + i << "\"}\n";
        }
    }
    if (listeners_yaml.empty()) {
        cfg << "listeners:\n"
            << "  - {name: master, role: write, bind: 127.0.0.1, port: " << p.write << "}\n"
            << "  - {name: replicas, role: read, bind: 127.0.0.1, port: " << p.read << "}\n";
    } else {
        cfg << listeners_yaml;
    }
    cfg << "stats: {bind: 127.0.0.1, port: " << p.stats << "}\n" << extra_yaml;
    return cfg.str();
}

/// patroxy in front of the lab cluster, as a child process with its own config.
class patroxy_process : public patroxy_child {
public:
    using ports = patroxy_ports;

    /// `listeners_yaml` replaces the default write/read listeners when set.
    explicit patroxy_process(const std::string& extra_yaml = "", ports p = ports{}, const std::string& listeners_yaml = "",
                             child_options o = {})
        : patroxy_child(lab_config(extra_yaml, p, listeners_yaml), o), ports_(p) {}
    /// With the lab's DCS (`from` dcs or both); `dcs_extra` lines ("  key: value\n") go into its section.
    patroxy_process(members_from from, const std::string& extra_yaml, ports p = ports{}, const std::string& dcs_extra = "",
                    child_options o = {})
        : patroxy_child(lab_config(extra_yaml, p, "", from, dcs_extra), o), ports_(p) {}

    std::string conninfo(int port, const std::string& extra = "") const {
        const auto env = lab_env();
        return "host=127.0.0.1 port=" + std::to_string(port) + " user=" + env.at("LAB_SUPERUSER") +
               " password=" + env.at("LAB_SUPERUSER_PASSWORD") + " dbname=" + env.at("LAB_DATABASE") +
               " connect_timeout=5 sslmode=disable " + extra;
    }
    std::string write_conninfo(const std::string& extra = "") const { return conninfo(ports_.write, extra); }
    std::string read_conninfo(const std::string& extra = "") const { return conninfo(ports_.read, extra); }
    const ports& port_numbers() const { return ports_; }
    /// Waits until the write port routes to a leader.
    bool wait_ready(std::chrono::milliseconds limit = std::chrono::seconds(30)) {
        return poll_until([&] {
            pg_connection c(write_conninfo());
            return c.ok();
        }, limit, std::chrono::milliseconds(200));
    }

private:
    ports ports_;
};

/// Waits (bounded) for an idle connection to be ended by its server, without
/// sending anything; returns what libpq was told (the FATAL's text reaches
/// the notice processor), empty when it is still open at `limit`.
inline std::string wait_until_ended(pg_connection& c, std::chrono::milliseconds limit) {
    std::string notices;
    PQsetNoticeProcessor(
        c.raw(), [](void* out, const char* text) { *static_cast<std::string*>(out) += text; }, &notices);
    const auto until = std::chrono::steady_clock::now() + limit;
    for (int polls = 0; polls < 1000 && std::chrono::steady_clock::now() < until; ++polls) {
        pollfd pfd{PQsocket(c.raw()), POLLIN, 0};
        if (::poll(&pfd, 1, 50) > 0) {
            const bool ended = PQconsumeInput(c.raw()) == 0;
            PQisBusy(c.raw());  // parses what arrived: the FATAL goes to the notice processor
            if (ended) {
                return notices + PQerrorMessage(c.raw());
            }
        }
    }
    return {};
}

/// Direct connection info for a member's PostgreSQL.
inline std::string member_conninfo(int member) {
    const auto env = lab_env();
    return "host=127.0.0.1 port=" + std::to_string(std::stoi(env.at("LAB_PG_PORT_BASE")) + member) +
           " user=" + env.at("LAB_SUPERUSER") + " password=" + env.at("LAB_SUPERUSER_PASSWORD") +
           " dbname=" + env.at("LAB_DATABASE") + " connect_timeout=3 sslmode=disable";
}

/// Which member a session reached: in recovery or not, and its PostgreSQL port.
struct where { bool in_recovery; int port; };

inline std::optional<where> which_member(pg_connection& c) {
    const auto v = c.scalar("SELECT pg_is_in_recovery()::text || ',' || current_setting('port')");
    if (!v) {
        return std::nullopt;
    }
    return where{v->substr(0, v->find(',')) == "true", std::stoi(v->substr(v->find(',') + 1))};
}

inline int leader_port() {
    const auto [rc, name] = lab("leader");
    REQUIRE(rc == 0);
    return lab_int("LAB_PG_PORT_BASE") + std::stoi(name.substr(2));
}

// Restarts a member a test killed and waits until it streams again, so the
// next test finds three members.
inline void bring_back(const std::string& member) {
    CHECK(lab("start " + member).first == 0);
    CHECK(lab("wait-healthy 90").first == 0);
}

}  // namespace patroxy::testing
