#pragma once
// The data plane: N workers, each accepting on every listener. The control
// thread hands it topologies and drives shutdown.

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <memory>
#include <vector>

namespace patroxy::proxy {

/// One listener's sessions to one member, summed over workers.
struct member_totals {
    std::uint64_t current = 0;
    std::uint64_t peak = 0;
    std::uint64_t total = 0;
    std::uint64_t connect_errors = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
};

/// One listener, summed over workers.
struct listener_totals {
    std::uint64_t accepted = 0;
    std::uint64_t current = 0;
    std::uint64_t peak = 0;
    std::uint64_t held = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::array<std::uint64_t, close_reason_count> closed{};
    std::vector<member_totals> members;   ///< indexed like config::members
};

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
    /// Every listener's counters summed over the workers (any thread).
    std::vector<listener_totals> totals() const;
    void stop();
    /// Up to `limit` sessions across the workers, oldest first, delivered to
    /// `done` on `reply_on` once every worker has answered. Never blocks.
    void describe_sessions(std::size_t limit, net::any_io_executor reply_on,
                           std::function<void(std::vector<session_view>)> done);

    const std::vector<std::unique_ptr<worker>>& workers() const { return workers_; }
    std::size_t worker_count() const { return workers_.size(); }
    /// Sessions report members they could not use here; set its sink before start().
    trouble_reporter& trouble() { return trouble_; }
    /// Cancel keys known now (sessions whose startup answer was plaintext).
    std::size_t known_cancel_keys() const { return cancels_.size(); }

private:
    const conf::config& cfg_;
    std::vector<listener_slots> slots_;
    cancel_registry cancels_;
    trouble_reporter trouble_;
    std::vector<std::unique_ptr<worker>> workers_;
};

/// Workers to run: the configured count, or one per core.
std::size_t worker_count(const conf::config& cfg);

}  // namespace patroxy::proxy
