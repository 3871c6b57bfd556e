#pragma once
// Wires the planes together: the control io_context (health checks, signals)
// runs on the calling thread, the workers on theirs.

#include "conf/config.hpp"
#include "health/monitor.hpp"
#include "proxy/server.hpp"

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

    conf::config cfg_;
    boost::asio::io_context control_{1};
    boost::asio::signal_set signals_;
    boost::asio::steady_timer drain_timer_;
    proxy::server server_;
    health::monitor monitor_;
    std::chrono::steady_clock::time_point drain_deadline_{};
    bool draining_ = false;
    bool closing_ = false;
};

}  // namespace patroxy::app
