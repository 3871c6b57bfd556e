#pragma once
// The data plane: N workers, each accepting on every listener. The control
// thread hands it configuration snapshots and topologies (joined into one
// routing snapshot per change), and drives reloads, drains and shutdown.
//
// Listening sockets are known by their address (bind, port): a reload keeps
// the very socket of a listener that stays (even renamed), binds a new one
// before anything is closed, and closes a removed one at once. The server
// keeps its own copy of every socket it hands a worker, so a socket outlives
// a worker's close until the server lets go (a binary upgrade hands these
// copies to the next process).

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/books.hpp"
#include "proxy/routing.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace patroxy::proxy {

/// Listening sockets a previous process handed over, by listener name.
using inherited_sockets = std::map<std::string, std::vector<unique_fd>>;
/// Each cluster's latest topology, by cluster label.
using topologies = std::map<std::string, health::topology_ptr>;

class server {
public:
    /// Binds every listener on every worker (or takes `inherited` ones);
    /// throws naming the listener on failure.
    server(conf::config_ptr cfg, topologies initial, inherited_sockets inherited = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    void start();
    /// A cluster's monitor has a new topology (control thread); the single
    /// cluster's, or the first's, without a label.
    void publish(health::topology_ptr t) { publish(cfg_->cluster_label(0), std::move(t)); }
    void publish(const std::string& cluster, health::topology_ptr t);
    /// A reload, step one (control thread): binds the listening sockets the
    /// configuration adds; on any failure nothing changed and the error is returned.
    std::optional<std::string> prepare(const conf::config& cfg);
    /// Step two: the new configuration, with the sockets prepare() bound
    /// (those of removed listeners close; renamed ones keep their socket).
    /// `fresh` has the topologies built for the new configuration (their classes), by cluster.
    void apply(conf::config_ptr cfg, topologies fresh = {});
    /// Stops accepting and closes every listening socket (shutdown).
    void stop_accepting();
    /// Stops the workers accepting but keeps the server's copies of the
    /// sockets open, for the next process (an upgrade). Connections queue in
    /// the kernel meanwhile.
    void pause_for_handover();
    /// The handover failed: the workers accept on the kept sockets again.
    void resume_after_handover();
    /// The handover is done: the server's copies are closed.
    void release_sockets();
    /// Every listening socket the server holds, by listener name (an upgrade sends them).
    std::vector<std::pair<std::string, int>> sockets() const;
    /// Drains, on every worker, the sessions `order.applies` picks.
    void drain(const drain_order& order);
    /// A reload's drain: delivered with the next routing each worker gets
    /// (publish() or apply()), in the same post, so that no session is routed
    /// by the old routing in between (to a member that then leaves the set,
    /// which would cut it, or to a moved member's old address, which would
    /// keep it there).
    void drain_with_next_routing(drain_order order);
    /// Closes what is left.
    void close_all();
    std::size_t session_count() const;
    /// Every listener's counters summed over the workers, by name (any thread).
    std::map<std::string, listener_totals> totals() const { return books_.totals(); }
    void stop();
    /// Up to `limit` sessions across the workers, oldest first, delivered to
    /// `done` on `reply_on` once every worker has answered. Never blocks.
    void describe_sessions(std::size_t limit, net::any_io_executor reply_on,
                           std::function<void(std::vector<session_view>)> done);

    std::size_t worker_count() const { return workers_.size(); }
    /// Sessions report members they could not use here; set its sink before start().
    trouble_reporter& trouble() { return trouble_; }
    /// Cancel keys known now (sessions whose startup answer was plaintext).
    std::size_t known_cancel_keys() const { return cancels_.size(); }
    /// Client connections open now (every listener) and the ceiling on them.
    int connections() const { return ceiling_.active.load(std::memory_order_relaxed); }
    int connection_limit() const { return ceiling_.limit.load(std::memory_order_relaxed); }
    /// Moves the ceiling (the descriptor limit changed); any thread.
    void set_connection_limit(int limit) { ceiling_.limit.store(limit, std::memory_order_relaxed); }
    /// The routing the workers have now (control thread).
    routing_ptr current() const { return routing_; }

private:
    /// One listening address: a socket per worker (the server's copies).
    struct socket_set {
        std::string listener;          ///< the name it serves under now
        std::vector<unique_fd> fds;    ///< one per worker (or more, inherited)
    };
    static std::string address_of(const conf::listener_config& l);
    /// Binds a socket per worker for `l`; throws naming the listener.
    socket_set open_set(const conf::listener_config& l);
    /// Copies of a set's sockets for the workers, dealt round-robin into `into`.
    static void deal(const socket_set& set, std::vector<listener_changes>& into);
    std::vector<listener_changes> deal_all() const;

    conf::config_ptr cfg_;
    topologies topologies_;   ///< the latest of each cluster, by label
    /// Joins cfg_ and topologies_ into routing_.
    void reroute();
    routing_ptr routing_;
    book_registry books_;
    connection_ceiling ceiling_;
    cancel_registry cancels_;
    trouble_reporter trouble_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::map<std::string, socket_set> sockets_;   ///< by address "bind:port"
    std::map<std::string, socket_set> prepared_;  ///< bound by prepare(), for apply()
    std::optional<drain_order> pending_drain_;    ///< for the next routing posted
};

/// Workers to run: the configured count, or one per core.
std::size_t worker_count(const conf::config& cfg);

}  // namespace patroxy::proxy
