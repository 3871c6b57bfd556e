#pragma once
// Wires the planes together: the control io_context (health checks, signals)
// runs on the calling thread, the workers on theirs.

#include "conf/config.hpp"
#include "health/monitor.hpp"
#include "proxy/server.hpp"
#include "stats/http_server.hpp"
#include "vip/vrrp_instance.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

namespace patroxy::app {

class daemon {
public:
    /// Binds every listener; throws std::exception with a readable message on failure.
    explicit daemon(conf::config cfg);
    /// Runs until SIGTERM/SIGINT and the drain finish; returns the exit code.
    int run();

private:
    void on_signal(int signo);
    void drain_tick();
    stats::status collect() const;
    /// Empty while this host can route writes, else why not (the VIP's priority tracks it).
    std::string unhealthy_reason();

    conf::config cfg_;
    boost::asio::io_context control_{1};
    boost::asio::signal_set signals_;
    boost::asio::steady_timer drain_timer_;
    proxy::server server_;
    health::monitor monitor_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::optional<stats::http_server> stats_;
    vip::vrrp_instance vip_;
    std::optional<std::chrono::steady_clock::time_point> leaderless_since_;
    std::chrono::steady_clock::time_point drain_deadline_{};
    bool draining_ = false;
    bool closing_ = false;
};

}  // namespace patroxy::app
