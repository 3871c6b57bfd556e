#pragma once
// Helpers for tests on the real lab cluster (lab/cluster.sh): its settings,
// a patroxy child process in front of it, and libpq connections.

#include <libpq-fe.h>

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
                value = d[1];
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

/// patroxy in front of the lab cluster, as a child process with its own config.
class patroxy_process {
public:
    using ports = patroxy_ports;

    /// `listeners_yaml` replaces the default write/read listeners when set.
    explicit patroxy_process(const std::string& extra_yaml = "", ports p = ports{}, const std::string& listeners_yaml = "")
        : ports_(p) {
        const auto env = lab_env();
        dir_ = "/tmp/patroxy-test-" + std::to_string(::getpid());
        std::system(("mkdir -p " + dir_).c_str());
        config_ = dir_ + "/patroxy.yml";
        log_ = dir_ + "/patroxy.log";
        std::ofstream cfg(config_);
        cfg << "scope: " << env.at("LAB_SCOPE") << "\nmembers:\n";
        const int pg = std::stoi(env.at("LAB_PG_PORT_BASE"));
        const int api = std::stoi(env.at("LAB_API_PORT_BASE"));
        for (int i = 0; i < 3; ++i) {
            cfg << "  - {name: pg" << i << ", host: 127.0.0.1, port: " << pg + i << ", api: \"http://127.0.0.1:"
                << api + i << "\"}\n";
        }
        if (listeners_yaml.empty()) {
            cfg << "listeners:\n"
                << "  - {name: master, role: write, bind: 127.0.0.1, port: " << p.write << "}\n"
                << "  - {name: replicas, role: read, bind: 127.0.0.1, port: " << p.read << "}\n";
        } else {
            cfg << listeners_yaml;
        }
        cfg << "stats: {bind: 127.0.0.1, port: " << p.stats << "}\n"
            << extra_yaml;
        cfg.close();
        pid_ = ::fork();
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 2);
            ::dup2(fd, 1);
            ::execl(PATROXY_BINARY, "patroxy", "-c", config_.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    /// Sends `signo` and waits (bounded) for the exit; returns the exit code,
    /// or -1 if it did not exit within `limit`.
    int signal_and_wait(int signo, std::chrono::milliseconds limit) {
        ::kill(pid_, signo);
        const auto until = std::chrono::steady_clock::now() + limit;
        int status = 0;
        while (std::chrono::steady_clock::now() < until) {
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return -1;
    }
    /// The process id (-1 once it has exited).
    pid_t pid() const { return pid_; }
    /// Whether the process is still running.
    bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

    ~patroxy_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
    }
    patroxy_process(const patroxy_process&) = delete;
    patroxy_process& operator=(const patroxy_process&) = delete;

    std::string conninfo(int port, const std::string& extra = "") const {
        const auto env = lab_env();
        return "host=127.0.0.1 port=" + std::to_string(port) + " user=" + env.at("LAB_SUPERUSER") +
               " password=" + env.at("LAB_SUPERUSER_PASSWORD") + " dbname=" + env.at("LAB_DATABASE") +
               " connect_timeout=5 sslmode=disable " + extra;
    }
    std::string write_conninfo(const std::string& extra = "") const { return conninfo(ports_.write, extra); }
    std::string read_conninfo(const std::string& extra = "") const { return conninfo(ports_.read, extra); }
    const ports& port_numbers() const { return ports_; }
    std::string log() const {
        std::ifstream in(log_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    const std::string& config_path() const { return config_; }
    /// Waits until the write port routes to a leader.
    bool wait_ready(std::chrono::milliseconds limit = std::chrono::seconds(30)) {
        return poll_until([&] {
            pg_connection c(write_conninfo());
            return c.ok();
        }, limit, std::chrono::milliseconds(200));
    }

private:
    ports ports_;
    std::string dir_;
    std::string config_;
    std::string log_;
    pid_t pid_ = -1;
};

/// Direct connection info for a member's PostgreSQL.
inline std::string member_conninfo(int member) {
    const auto env = lab_env();
    return "host=127.0.0.1 port=" + std::to_string(std::stoi(env.at("LAB_PG_PORT_BASE")) + member) +
           " user=" + env.at("LAB_SUPERUSER") + " password=" + env.at("LAB_SUPERUSER_PASSWORD") +
           " dbname=" + env.at("LAB_DATABASE") + " connect_timeout=3 sslmode=disable";
}

}  // namespace patroxy::testing
