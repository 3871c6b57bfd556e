#pragma once
// The real proxy and health monitor, in process, against fake Patroni APIs and
// stand-in PostgreSQL backends on 127.0.0.1 ephemeral ports: what the
// component tests (tests/component_*_test.cpp) build their clusters from.

#include "app/daemon.hpp"
#include "proxy/server.hpp"

#include "bench/standin_backend.hpp"
#include "health/monitor.hpp"
#include "support/fake_patroni.hpp"
#include "support/raw_client.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <random>
#include <stdexcept>
#include <thread>

namespace patroxy::testing {

using namespace std::chrono_literals;

// A port nothing listens on, for a listener the code under test binds later.
// Drawn below the kernel's ephemeral range (32768-60999 by default): a port
// the kernel handed out for bind(0) could be taken by any outgoing connect of
// a test running beside this one before the listener binds it. Random, so
// that two test processes rarely draw the same one; 20100-24899 stays clear of
// the lab's (12379+, 15432+, 18008+) and the package test's (25000+, 27000).
inline std::uint16_t free_port() {
    static std::mt19937 draw{std::random_device{}()};
    std::uniform_int_distribution<int> in_range(20100, 24899);
    boost::asio::io_context ioc;
    for (int attempt = 0; attempt < 200; ++attempt) {
        const auto port = static_cast<std::uint16_t>(in_range(draw));
        boost::asio::ip::tcp::acceptor a(ioc);
        boost::system::error_code ec;
        a.open(boost::asio::ip::tcp::v4(), ec);
        a.bind({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
        if (!ec) {
            return port;
        }
    }
    throw std::runtime_error("no free port in 20100-24899 after 200 draws");
}

// Polls `done` every 20 ms for at most `limit`.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return done();
}

// One member: a fake Patroni API plus a stand-in PostgreSQL.
struct fake_member {
    fake_member(const std::string& name, const std::string& role) : api(fake_patroni::answer(role)), pg(name) {}
    fake_patroni api;
    bench::standin_thread pg;
};

// patroxy itself (app::daemon, as main wires it), in process, on threads of its own.
class proxy_under_test {
public:
    explicit proxy_under_test(conf::config cfg) {
        cfg.generation = 1;
        conf::inherit_health_keys(cfg);
        auto snapshot = std::make_shared<const conf::config>(std::move(cfg));
        app::daemon_options options;
        options.handle_signals = false;  // the test process's signals stay its own
        daemon_ = std::make_unique<app::daemon>(snapshot, options);
        thread_ = std::thread([this] { daemon_->run(); });
    }
    ~proxy_under_test() {
        daemon_->stop_now();
        thread_.join();
    }
    std::uint16_t port(std::size_t listener) const { return daemon_->config()->listeners[listener].port; }
    health::topology_ptr topology() const { return daemon_->topology(); }
    proxy::server& server() { return daemon_->server(); }
    app::daemon& daemon() { return *daemon_; }
    conf::config config() const { return *daemon_->config(); }
    /// Applies `next` as a SIGHUP reload would (after the file was read).
    app::reload_result reload(conf::config next) {
        app::reload_result r;
        conf::inherit_health_keys(next);
        daemon_->on_control([&] { r = daemon_->apply(std::make_shared<const conf::config>(std::move(next))); });
        return r;
    }
    /// Waits until the monitor routes writes to `leader` (or to none).
    bool wait_for_leader(std::optional<std::size_t> leader, std::chrono::milliseconds limit = 5s) {
        return eventually([&] { return topology()->leader == leader; }, limit);
    }

private:
    std::unique_ptr<app::daemon> daemon_;
    std::thread thread_;
};

inline conf::config config_for(std::vector<std::unique_ptr<fake_member>>& members) {
    conf::config cfg;
    for (std::size_t i = 0; i < members.size(); ++i) {
        conf::member_config m;
        m.name = "pg" + std::to_string(i);
        m.host = "127.0.0.1";
        m.port = members[i]->pg->port();
        m.api.host = "127.0.0.1";
        m.api.port = members[i]->api.port();
        m.api.url = members[i]->api.url();
        cfg.members.push_back(m);
    }
    cfg.listeners = conf::config::default_listeners();
    cfg.listeners[0].bind = cfg.listeners[1].bind = "127.0.0.1";
    cfg.listeners[0].port = free_port();
    cfg.listeners[1].port = free_port();
    cfg.workers = 2;
    cfg.health.interval = 200ms;
    cfg.health.fast_interval = 100ms;
    cfg.health.timeout = 300ms;
    cfg.timeouts.wait_for_backend = 3s;
    cfg.timeouts.connect = 1s;
    cfg.stats.enabled = false;   // a test that wants the page sets a port
    cfg.control_socket.clear();  // no binary upgrades in process
    return cfg;
}

/// config_for(members), with member `i`'s PostgreSQL at `pg_port`: a scripted
/// stand-in (stopping_postgres, silent_listener) in the place of the real one.
inline conf::config config_with_postgres_at(std::vector<std::unique_ptr<fake_member>>& members, std::size_t i,
                                            std::uint16_t pg_port) {
    auto cfg = config_for(members);
    cfg.members[i].port = pg_port;
    return cfg;
}

// A client that connects and sends its startup on a thread of its own, so the
// test can change the cluster while patroxy holds it.
inline std::future<startup_outcome> startup_in_background(std::uint16_t port) {
    return std::async(std::launch::async, [port] {
        raw_client c(port);
        return c.startup();
    });
}

// The held client got through, to `member`.
inline void check_routed_to(std::future<startup_outcome>& outcome, const std::string& member) {
    REQUIRE(outcome.wait_for(3s) == std::future_status::ready);
    const auto r = outcome.get();
    CHECK(r.ready);
    CHECK(r.server_name == member);
}

// A PostgreSQL that is stopping: it accepts, reads the startup, sends
// `answer` (nothing: just closes; or its FATAL 57P03) and closes.
class stopping_postgres {
public:
    explicit stopping_postgres(std::vector<std::uint8_t> answer = {}) : answer_(std::move(answer)) {
        accept_one();
        thread_ = std::thread([this] { ioc_.run_for(10s); });
    }
    ~stopping_postgres() {
        ioc_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int answered() const { return answered_; }

private:
    void accept_one() {
        acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
            if (ec) {
                return;
            }
            auto sock = std::make_shared<boost::asio::ip::tcp::socket>(std::move(s));
            auto buf = std::make_shared<std::array<std::uint8_t, 512>>();
            sock->async_read_some(boost::asio::buffer(*buf), [this, sock, buf](boost::system::error_code rec, std::size_t) {
                if (rec) {
                    return;
                }
                ++answered_;
                boost::asio::async_write(*sock, boost::asio::buffer(answer_),
                                         [sock](boost::system::error_code, std::size_t) { sock->close(); });
            });
            accept_one();
        });
    }

    std::vector<std::uint8_t> answer_;
    boost::asio::io_context ioc_;
    boost::asio::ip::tcp::acceptor acceptor_{ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}};
    std::atomic<int> answered_{0};
    std::thread thread_;
};

// A PostgreSQL port that never answers: it listens, but nothing accepts.
// Connections wait in its backlog; once `backlog` + 1 wait, new SYNs are
// dropped and connects hang.
class silent_listener {
public:
    explicit silent_listener(int backlog) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, backlog) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            ::close(fd_);
            throw std::runtime_error("silent_listener: cannot listen on 127.0.0.1");
        }
        port_ = ntohs(addr.sin_port);
    }
    ~silent_listener() { ::close(fd_); }
    silent_listener(const silent_listener&) = delete;
    silent_listener& operator=(const silent_listener&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_;
    std::uint16_t port_ = 0;
};

inline std::vector<std::unique_ptr<fake_member>> cluster(std::initializer_list<std::string> roles) {
    std::vector<std::unique_ptr<fake_member>> out;
    int i = 0;
    for (const auto& r : roles) {
        out.push_back(std::make_unique<fake_member>("pg" + std::to_string(i++), r));
    }
    return out;
}

// AuthenticationOk then ReadyForQuery: the shortest startup answer.
inline std::vector<std::uint8_t> trust_answer() {
    return {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I'};
}

}  // namespace patroxy::testing
