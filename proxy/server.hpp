#pragma once
// The data plane: N workers, each accepting on every listener. The control
// thread hands it topologies and drives shutdown.

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/worker.hpp"

#include <memory>
#include <vector>

namespace patroxy::proxy {

class server {
public:
    /// Binds every listener on every worker; throws naming the listener on failure.
    server(const conf::config& cfg, health::topology_ptr initial);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    void start();
    /// Hands a new topology to every worker (each applies it on its own thread).
    void publish(health::topology_ptr t);
    /// Drain, phase one: stop accepting, refuse held clients.
    void stop_accepting();
    /// Drain, phase two: close what is left.
    void close_all();
    std::size_t session_count() const;
    void stop();

    const std::vector<std::unique_ptr<worker>>& workers() const { return workers_; }
    std::size_t worker_count() const { return workers_.size(); }

private:
    std::vector<listener_slots> slots_;
    std::vector<std::unique_ptr<worker>> workers_;
};

/// Workers to run: the configured count, or one per core.
std::size_t worker_count(const conf::config& cfg);

}  // namespace patroxy::proxy
