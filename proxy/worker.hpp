#pragma once
// One data-plane thread: its own io_context, its own SO_REUSEPORT acceptor per
// listener, the sessions it accepted, and its own copy of the current
// topology pointer. Nothing here is shared with other workers except the
// listeners' active-session counts (one atomic per accept and close).

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/counters.hpp"
#include "proxy/deadline_queue.hpp"
#include "proxy/session.hpp"
#include "proxy/trouble_reporter.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <netinet/in.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

namespace patroxy::proxy {

// Boost 1.74 has no option for these; the kernel spreads accepts across the
// workers' SO_REUSEPORT sockets, and IP_FREEBIND lets a listener bind a VIP
// that is not on this host yet (no net.ipv4.ip_nonlocal_bind needed).
using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
using free_bind = net::detail::socket_option::boolean<IPPROTO_IP, IP_FREEBIND>;

/// Listener state every worker shares, touched once per new session (never
/// per byte): the maxconn budget and the round-robin cursor, so that reads
/// alternate across workers as HAProxy's roundrobin does across threads.
struct listener_slots {
    std::atomic<int> active{0};
    std::atomic<int> peak{0};   ///< highest `active` seen, for the stats page
    std::atomic<std::size_t> cursor{0};
    /// Per member: sessions open now across workers, and the most at once.
    struct member_slot {
        std::atomic<int> active{0};
        std::atomic<int> peak{0};
    };
    std::unique_ptr<member_slot[]> members;
};

/// Adds one to `active` and raises `peak` to match; returns the new count.
inline int count_in(std::atomic<int>& active, std::atomic<int>& peak) {
    const int now = active.fetch_add(1, std::memory_order_relaxed) + 1;
    for (int seen = peak.load(std::memory_order_relaxed);
         now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed);) {
    }
    return now;
}

class worker {
public:
    worker(const conf::config& cfg, std::vector<listener_slots>& slots, cancel_registry& cancels,
           trouble_reporter& trouble, health::topology_ptr initial);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    /// Binds this worker's acceptor for every listener; throws with the
    /// listener named on failure (before any thread starts).
    void open_listeners();
    /// Runs the io_context on a thread of its own.
    void start();
    /// Any thread: adopt a new topology.
    void post_topology(health::topology_ptr t);
    /// Any thread: stop accepting; refuse held clients; keep relaying.
    void post_stop_accepting();
    /// Any thread: close every session with `shutdown`.
    void post_close_all();
    /// Any thread: copies up to `limit` of this worker's sessions, oldest
    /// first, and hands them to `reply` on the worker's thread.
    void post_describe(std::size_t limit, std::function<void(std::vector<session_view>)> reply);
    /// Any thread: stop the loop and join the thread.
    void stop();
    /// Any thread: sessions alive now.
    std::size_t session_count() const { return session_count_.load(std::memory_order_relaxed); }
    const worker_counters& counters() const { return counters_; }

    // For this worker's sessions (worker thread only).
    net::io_context& ioc() { return ioc_; }
    const conf::config& config() const { return cfg_; }
    const health::topology& topology() const { return *topology_; }
    buffer_pool& buffers() { return buffers_; }
    deadline_queue& deadlines() { return deadlines_; }
    worker_counters& counters() { return counters_; }
    listener_slots& slots(std::size_t listener) { return slots_[listener]; }
    cancel_registry& cancels() { return cancels_; }
    trouble_reporter& trouble() { return trouble_; }
    const tcp::endpoint& member_endpoint(std::size_t m) const { return member_endpoints_[m]; }
    bool accepting() const { return accepting_; }
    void add(session* s);
    void remove(session* s);

private:
    void do_accept(std::size_t listener);
    void on_accept(std::size_t listener, error_code ec, tcp::socket socket);
    void on_topology(health::topology_ptr t);
    /// Calls `act` on every session alive now, even if earlier calls close others.
    void each_session(const std::function<void(session&)>& act);

    const conf::config& cfg_;
    std::vector<listener_slots>& slots_;
    cancel_registry& cancels_;
    trouble_reporter& trouble_;
    // Declared before ioc_ so they outlive it: destroying ioc_ destroys the
    // sessions its pending handlers hold, and those return buffers and leave
    // the set on the way out.
    buffer_pool buffers_;
    worker_counters counters_;
    std::unordered_set<session*> sessions_;
    std::atomic<std::size_t> session_count_{0};
    net::io_context ioc_{1};
    net::executor_work_guard<net::io_context::executor_type> work_;
    // After ioc_: the sessions it keeps alive close their sockets while the
    // io_context still exists.
    deadline_queue deadlines_{ioc_};
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
    std::vector<std::unique_ptr<net::steady_timer>> accept_retry_;
    health::topology_ptr topology_;
    std::vector<tcp::endpoint> member_endpoints_;
    bool accepting_ = true;
    std::vector<tcp::endpoint> peers_;   ///< per listener: filled by its pending accept
    std::thread thread_;
};

}  // namespace patroxy::proxy
