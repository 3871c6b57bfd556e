#pragma once
// Wires the planes together, once, for main and for the tests alike: the
// control io_context (health checks, VRRP, signals, reloads, the control
// socket) runs on the calling thread, the workers on theirs, and the stats
// server on a thread of its own at a lower CPU priority, so that no client
// of the stats port can delay a health check or an advert.
//
// Change without loss (DESIGN principle 6):
// - SIGHUP re-reads the file; anything wrong in it keeps the running
//   configuration untouched. Otherwise the new snapshot is applied live:
//   listeners bound first, members and health settings, timeouts for new
//   sessions, stats settings, log level, VIP settings. Sessions of a removed
//   listener or on a removed (or moved) member are drained at idle points.
// - SIGUSR2 starts the next binary with --upgrade; it takes the listening
//   sockets, the VRRP state and the members' last answers over the control
//   socket (app/handover.hpp), and this process drains and exits.
// - SIGTERM/SIGINT: the VIP resigns, the ports close, sessions are closed
//   at idle points within timeouts.drain, then cut; a second signal cuts now.

#include "app/handover.hpp"
#include "app/notify.hpp"
#include "conf/config.hpp"
#include "health/monitor.hpp"
#include "proxy/server.hpp"
#include "stats/http_server.hpp"
#include "vip/vrrp_instance.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/resource.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace patroxy::app {

struct daemon_options {
    /// Take the listening sockets from the patroxy running at the
    /// configuration's control_socket (starts afresh when none answers).
    bool upgrade = false;
    /// SIGTERM, SIGINT, SIGHUP, SIGUSR2; tests leave the process's signals alone.
    bool handle_signals = true;
    /// The binary SIGUSR2 starts as the next process, and its configuration file.
    std::string executable;
};

/// The outcome of one reload.
struct reload_result {
    bool applied = false;
    std::vector<std::string> errors;           ///< file:line:col lines, or why it could not apply
    std::vector<std::string> restart_needed;
};

class daemon {
public:
    /// Binds every listener (or takes them over); throws std::exception with
    /// a readable message on failure.
    explicit daemon(conf::config_ptr cfg, daemon_options options = {});
    ~daemon();
    /// Runs until stopped and drained; returns the exit code.
    int run();

    /// Any thread: re-reads the configuration file and applies it (SIGHUP).
    void request_reload();
    /// Any thread: SIGTERM's drain.
    void request_shutdown();
    /// Any thread: stops now, closing every session (tests).
    void stop_now();
    /// Control thread: applies a validated configuration (what a reload does after reading).
    reload_result apply(conf::config_ptr next);

    // For tests and the harness (any thread unless said).
    proxy::server& server() { return server_; }
    /// The first (or only) cluster's latest topology.
    health::topology_ptr topology() const;
    /// The latest topology of the cluster labelled `label`, or nullptr (any thread).
    health::topology_ptr topology(std::string_view label) const;
    conf::config_ptr config() const { return current_.load(); }
    boost::asio::io_context& control() { return control_; }
    std::uint16_t stats_port() const { return stats_ ? stats_->port() : 0; }
    /// What the reloads did so far (the page's last_reload).
    stats::reload_info reloads() const {
        const std::lock_guard lock(reload_mutex_);
        return reload_;
    }
    /// Waits (bounded) until `fn` ran on the control thread; returns false on timeout.
    bool on_control(const std::function<void()>& fn, std::chrono::milliseconds limit = std::chrono::seconds(5));

private:
    static std::optional<received_handover> take_over(const conf::config& cfg, const daemon_options& o);
    static proxy::inherited_sockets inherited_listeners(std::optional<received_handover>& from);
    static std::optional<int> inherited_socket(std::optional<received_handover>& from, std::string_view kind);

    void wait_for_signal();
    void on_signal(int signo);
    void reload_file();
    void begin_drain(std::string why, bool resign_vip);
    void drain_tick();
    void spawn_next();
    handover_payload prepare_handover();
    void handover_done(bool taken, bool adopted);
    /// Re-reads the descriptor limit every second (an operator's `prlimit`
    /// moves it) and keeps the connection ceiling below it.
    void watch_descriptor_limit();
    stats::status collect() const;
    /// Every member was checked once (or the previous process's answers were
    /// taken over): systemd's READY=1 can go out.
    bool first_round_in() const;
    /// The one line `systemctl status` shows.
    std::string status_line() const;
    /// Empty while this host can route writes, else why not (the VIP's priority tracks it).
    std::string unhealthy_reason();
    void record(const reload_result& r);
    /// Runs an io_context until it is stopped; an exception from a handler is
    /// logged and the loop goes on (the handler's own work is lost, nothing else).
    static void run_contained(boost::asio::io_context& ioc, std::string_view name);

    daemon_options options_;
    conf::config_ptr cfg_;                       ///< control thread's
    std::atomic<conf::config_ptr> current_;      ///< what readers on other threads see
    boost::asio::io_context control_{1};
    boost::asio::io_context stats_ioc_{1};
    std::optional<received_handover> handover_;  ///< from the previous process, until confirmed
    std::thread stats_thread_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer drain_timer_;
    boost::asio::steady_timer limit_timer_;
    bool server_ready_ = false;                  ///< the monitors may publish to the server
    /// One monitor per Patroni cluster, in the configuration's order.
    struct cluster_watch {
        /// Its label, which its monitor publishes under (shared with that
        /// callback: a reload that renames the cluster renames both).
        std::shared_ptr<std::string> label;
        std::unique_ptr<health::monitor> monitor;
    };
    std::map<std::string, health::member_id> id_bases_;   ///< each label's first member id, for good (before clusters_)
    std::vector<cluster_watch> clusters_;
    mutable std::mutex clusters_mutex_;          ///< the stats thread reads clusters_; a reload changes it
    /// A monitor for cluster `i` of `cfg` (its ids apart from every other cluster's).
    cluster_watch watch_cluster(const conf::config& cfg, std::size_t i);
    std::vector<cluster_watch> watch_clusters();
    proxy::topologies latest_topologies() const;
    void stop_monitors();
    /// Every member's last Patroni answer, by handover_name.
    nlohmann::json last_answers() const;
    /// The name an upgrade hands a member's answer over by: its own in the
    /// first cluster (as before several clusters), "label/name" in the others.
    static std::string handover_name(std::size_t cluster, const std::string& label, const std::string& member);
    proxy::server server_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::optional<stats::http_server> stats_;
    vip::vrrp_instance vip_;
    std::optional<control_server> control_server_;
    notify::service notify_;                     ///< Type=notify: READY=1, RELOADING=1, STOPPING=1, STATUS=
    bool took_over_ = false;                     ///< started by a binary upgrade (READY=1 carries MAINPID=)
    vip::vrrp_handover vip_handed_;              ///< what a handover in progress gave away
    bool handing_over_ = false;                  ///< from the request until done: reloads and upgrades wait
    std::optional<std::chrono::steady_clock::time_point> leaderless_since_;
    std::chrono::steady_clock::time_point drain_deadline_{};
    bool draining_ = false;
    rlim_t nofile_seen_ = 0;                     ///< the descriptor limit at the last look
    bool closing_ = false;
    mutable std::mutex reload_mutex_;            ///< guards reload_ for the stats thread
    stats::reload_info reload_;
};

}  // namespace patroxy::app
