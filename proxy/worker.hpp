#pragma once
// One data-plane thread: its own event loop, its own SO_REUSEPORT listening
// socket per listener (known by name, so a reload keeps the very socket of a
// listener that stays), the sessions it accepted (it owns them), and its copy
// of the current routing. Nothing here is shared with other workers except
// the books' active-session counts (one atomic per accept and close).

#include "conf/config.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/cancel_registry.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/routing.hpp"
#include "proxy/session.hpp"
#include "proxy/trouble_reporter.hpp"

#include <netinet/in.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

namespace patroxy::proxy {

/// The process-wide connection ceiling (HAProxy's global maxconn): every
/// worker checks it before each accept. Workers may overshoot it together by
/// at most one connection each.
struct connection_ceiling {
    std::atomic<int> active{0};   ///< client connections open now, every listener
    std::atomic<int> limit{0};    ///< follows the descriptor limit (the control thread re-reads it)
};

/// Listening sockets for a worker to take up, and the listeners whose
/// sockets to close (closes go first: a listener whose address changed is in both).
struct listener_changes {
    std::vector<std::pair<std::string, unique_fd>> open;   ///< listener name, socket
    std::vector<std::string> close;
};

/// Which sessions a drain is for.
struct drain_order {
    std::string why;                                     ///< told to the client with 57P01
    std::chrono::milliseconds spread{0};                 ///< idle closes spread over this much
    std::chrono::steady_clock::time_point deadline{};    ///< then cut
    /// Why a session drains, empty when it does not; unset: every session, for `why`.
    std::function<std::string(const session&)> reason;
    /// Sessions with no member yet are refused (a shutdown); else served (an upgrade).
    bool refuse_unrouted = true;
};

class worker {
public:
    worker(std::size_t index, connection_ceiling& ceiling, cancel_registry& cancels, trouble_reporter& trouble,
           routing_ptr initial);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    /// Before start(): takes up listening sockets (bound by the server).
    void adopt(listener_changes changes);
    /// Runs the event loop on a thread of its own.
    void start();
    /// Any thread: adopt new routing, and with it new or closed listening
    /// sockets; `drain` (a reload's) is applied first, in the same turn, so
    /// no session routes in between by the old routing and escapes it.
    void post_routing(routing_ptr r, listener_changes changes = {}, std::optional<drain_order> drain = {});
    /// Any thread: stop accepting on every listener (closes this worker's
    /// sockets; the server's own copies decide whether the port stays open).
    void post_stop_accepting();
    /// Any thread: accept again, on these sockets (after a handover that failed).
    void post_resume(listener_changes changes);
    /// Any thread: drain the sessions the order applies to.
    void post_drain(drain_order order);
    /// Any thread: close every session with `shutdown`.
    void post_close_all();
    /// Any thread: copies up to `limit` of this worker's sessions, oldest
    /// first, and hands them to `reply` on the worker's thread.
    /// `now`: the one instant every worker's ages are counted to, so that
    /// views from several workers sort by how long each session has run.
    void post_describe(std::size_t limit, std::chrono::steady_clock::time_point now,
                       std::function<void(std::vector<session_view>)> reply);
    /// Any thread: stop the loop and join the thread.
    void stop();
    /// Any thread: sessions alive now.
    std::size_t session_count() const { return session_count_.load(std::memory_order_relaxed); }

    // For this worker's sessions (worker thread only).
    std::size_t index() const { return index_; }
    event_loop& loop() { return loop_; }
    /// The routing new decisions use.
    const routing& current() const { return *routing_; }
    buffer_pool& buffers() { return buffers_; }
    deadline_queue& deadlines() { return loop_.deadlines(); }
    connection_ceiling& ceiling() { return ceiling_; }
    cancel_registry& cancels() { return cancels_; }
    trouble_reporter& trouble() { return trouble_; }
    /// A session that has just closed: freed once the current batch of
    /// events is handled (one of them may still name it).
    void remove(session* s);

private:
    /// One listening socket of this worker.
    struct listening final : event_loop::watcher {
        worker* owner = nullptr;
        std::string name;
        unique_fd fd;
        bool paused = false;   ///< not watched until a look-again deadline or a session's end
        void on_ready(std::uint32_t) override { owner->accept_some(*this); }
    };

    void take(listener_changes changes, bool watch);
    void accept_some(listening& l);
    /// Stops watching a listener and looks again after `after`.
    void pause_accepting(listening& l, std::chrono::milliseconds after);
    void resume_accepting(const std::string& name);
    /// The route of a listener in the current routing, by name.
    std::optional<std::size_t> route_position(const std::string& name) const;
    /// Room under the listener's and the process's ceilings for one more client.
    bool has_room(const listener_route& route) const;
    void on_routing(routing_ptr r);
    void drain_now(const drain_order& order);
    /// Calls `act` on every session alive now, even if earlier calls close others.
    void each_session(const std::function<void(session&)>& act);

    std::size_t index_;
    connection_ceiling& ceiling_;
    cancel_registry& cancels_;
    trouble_reporter& trouble_;
    // Declared before loop_ so they outlive it: destroying the loop destroys
    // the deadlines that hold sessions, and those return buffers on the way out.
    buffer_pool buffers_;
    std::unordered_map<session*, std::shared_ptr<session>> sessions_;
    std::vector<std::shared_ptr<session>> closed_;  ///< freed after the current batch
    std::atomic<std::size_t> session_count_{0};
    event_loop loop_;
    std::multimap<std::string, std::unique_ptr<listening>> listeners_;   ///< by listener name (inherited: several)
    /// Closed listening sockets, freed after the current batch (an event of it may name one).
    std::vector<std::unique_ptr<listening>> retired_;
    void retire(std::unique_ptr<listening> l);
    routing_ptr routing_;
    bool accepting_ = true;
    bool started_ = false;
    std::chrono::steady_clock::time_point accept_failure_logged_{};
    std::thread thread_;
};

}  // namespace patroxy::proxy
