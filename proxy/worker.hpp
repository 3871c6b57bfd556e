#pragma once
// One data-plane thread: its own event loop, its own SO_REUSEPORT listening
// socket per listener, the sessions it accepted (it owns them), and its own
// copy of the current topology pointer. Nothing here is shared with other workers except the
// listeners' active-session counts (one atomic per accept and close).

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/counters.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/session.hpp"
#include "proxy/trouble_reporter.hpp"

#include <netinet/in.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

namespace patroxy::proxy {

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
    /// Runs the event loop on a thread of its own.
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
    event_loop& loop() { return loop_; }
    const conf::config& config() const { return cfg_; }
    const health::topology& topology() const { return *topology_; }
    buffer_pool& buffers() { return buffers_; }
    deadline_queue& deadlines() { return loop_.deadlines(); }
    worker_counters& counters() { return counters_; }
    listener_slots& slots(std::size_t listener) { return slots_[listener]; }
    cancel_registry& cancels() { return cancels_; }
    trouble_reporter& trouble() { return trouble_; }
    const tcp::endpoint& member_endpoint(std::size_t m) const { return member_endpoints_[m]; }
    bool accepting() const { return accepting_; }
    /// A session that has just closed: freed once the current batch of
    /// events is handled (one of them may still name it).
    void remove(session* s);

private:
    /// One listening socket of this worker.
    struct listening final : event_loop::watcher {
        worker* owner = nullptr;
        std::size_t index = 0;
        unique_fd fd;
        void on_ready(std::uint32_t) override { owner->accept_some(index); }
    };

    void accept_some(std::size_t listener);
    void pause_accepting(std::size_t listener);
    void on_topology(health::topology_ptr t);
    /// Calls `act` on every session alive now, even if earlier calls close others.
    void each_session(const std::function<void(session&)>& act);

    const conf::config& cfg_;
    std::vector<listener_slots>& slots_;
    cancel_registry& cancels_;
    trouble_reporter& trouble_;
    // Declared before loop_ so they outlive it: destroying the loop destroys
    // the deadlines that hold sessions, and those return buffers on the way out.
    buffer_pool buffers_;
    worker_counters counters_;
    std::unordered_map<session*, std::shared_ptr<session>> sessions_;
    std::vector<std::shared_ptr<session>> closed_;  ///< freed after the current batch
    std::atomic<std::size_t> session_count_{0};
    event_loop loop_;
    std::vector<std::unique_ptr<listening>> listeners_;
    health::topology_ptr topology_;
    std::vector<tcp::endpoint> member_endpoints_;
    bool accepting_ = true;
    std::chrono::steady_clock::time_point accept_failure_logged_{};
    std::thread thread_;
};

}  // namespace patroxy::proxy
