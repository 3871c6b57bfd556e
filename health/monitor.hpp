#pragma once
// Files: monitor.cpp (members, checks, rebuilding and publishing),
// monitor_lock.cpp (the lock observation and the handback guard).
//
// Owns one patroni_client and one member_tracker per member, on the control
// io_context, and (with `dcs:` set) the watcher of Patroni's DCS. After every
// check or DCS event it builds a new topology; it keeps the latest for
// readers (stats) and calls `publish` whenever routing changes.
//
// Members are known by name. They come from the file, from the DCS's
// members/ keys, or both (the file's list then restricts the set and its
// fields win); a member that stays keeps its check history and its id, one
// whose API changed gets a new client, one that goes is stopped. So neither
// a reload nor a member key coming and going forgets what Patroni said.
//
// Who leads: the DCS's leader key while the view is fresh; without it, the
// lock holder a member's GET /cluster names; the roles alone as a last
// resort (health/topology.hpp). A new holder is checked at once and every
// 50 ms until it answers as primary.

#include "conf/config.hpp"
#include "health/dcs_watcher.hpp"
#include "health/eligibility.hpp"
#include "health/patroni_client.hpp"
#include "health/topology.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

namespace patroxy::health {

/// What the stats page shows about the DCS.
struct dcs_state {
    std::string type;                       ///< "etcd3" or "etcd"
    dcs_watcher::status watcher;
    bool fresh = false;                     ///< the view decides leadership now
    std::chrono::milliseconds stale_after{0};
    std::optional<std::string> leader;      ///< the leader key
    std::size_t members = 0;                ///< members/ keys
    std::optional<dcs_failover> failover;
    std::optional<std::chrono::seconds> ttl;
};

class monitor {
public:
    using publisher = std::function<void(topology_ptr)>;

    /// `cfg` is one cluster's view (conf::cluster_view); member ids start at
    /// `first_id`, so that each cluster's monitor hands out ids of its own;
    /// a `label` (with several clusters) goes into its log lines, and then a
    /// seeded answer of another scope is not taken.
    monitor(net::io_context& control, conf::config_ptr cfg, publisher publish, member_id first_id = 1,
            const std::string& label = {});
    ~monitor();
    monitor(const monitor&) = delete;
    monitor& operator=(const monitor&) = delete;

    /// Starts polling every member and watching the DCS.
    void start();
    /// Stops polling and watching; safe to call twice.
    void stop();
    /// A new configuration: members added, removed or changed, health and DCS settings.
    /// Publishes the new topology at once when the member set changed.
    void apply(conf::config_ptr cfg);
    /// A session could not use `member`: check it now, and if it leads,
    /// everyone soon (a leader that goes away usually has a successor).
    void suspect(member_id member);
    /// What a previous process knew (an upgrade): each member's last Patroni
    /// answer, so that routing goes on before the first check of our own.
    /// A member not known yet (discovered from the DCS) takes it when it comes.
    void seed(const std::string& member, const std::string& patroni_body);
    /// Each member's last Patroni answer (for the next process of an upgrade).
    std::map<std::string, std::string> last_answers() const;
    /// The newest snapshot; any thread.
    topology_ptr latest() const { return latest_.load(std::memory_order_acquire); }
    /// The DCS as last seen (any thread); nullopt without `dcs:`.
    std::optional<dcs_state> dcs() const;
    /// Counters for the stats page.
    std::uint64_t split_brain_events() const { return split_brain_events_.load(std::memory_order_relaxed); }
    std::uint64_t leader_changes() const { return leader_changes_.load(std::memory_order_relaxed); }
    /// When routing last got a leader, and how long it had none before that.
    struct leader_change {
        wall_time at{};
        std::chrono::milliseconds leaderless{0};
    };
    /// The last leader change (any thread); `at` is zero before the first.
    leader_change last_leader_change() const;

private:
    /// A PostgreSQL host name resolved on the control thread (again every minute).
    struct address {
        std::string name;                 ///< empty: cfg.host is an IP literal
        std::string ip;                   ///< what routing connects to; empty until resolved
        std::shared_ptr<net::ip::tcp::resolver> resolver;
        std::chrono::steady_clock::time_point resolved_at{};
        bool resolving = false;
    };
    struct member_slot {
        member_id id = 0;
        conf::member_config cfg;
        bool discovered = false;     ///< from the DCS, not the file
        member_tracker tracker;
        std::shared_ptr<patroni_client> client;
        std::string last_body;       ///< the last answer that parsed, for an upgrade
        address where;
    };
    struct wanted {
        conf::member_config cfg;
        bool discovered = false;
    };

    std::chrono::milliseconds on_check(member_id member, check_result r);
    /// Takes a previous process's answer as the member's own; false when it does not parse.
    bool seed_slot(member_slot& slot, const std::string& patroni_body);
    std::shared_ptr<patroni_client> client_for(const member_slot& slot);
    member_slot* find(member_id id);
    member_slot* find(const std::string& name);
    /// The members there should be: the file's, the DCS's, or the file's filled in from the DCS.
    std::vector<wanted> wanted_members();
    /// The file's and the DCS's members, before wanted_members() keeps a guarded old leader.
    std::vector<wanted> listed_members();
    /// The guard's member, or the last leader while its API hangs and its
    /// Patroni may write the key back (the guard starts at the next rebuild).
    bool may_hand_back(const member_slot& s) const;
    /// Makes the slots match `wanted_members()`; true when the routed set changed.
    bool reconcile(bool health_changed);
    void resolve(member_slot& slot);
    void on_dcs(const dcs_view& v);
    void restart_dcs();
    bool dcs_fresh(std::chrono::steady_clock::time_point now) const;
    /// The cluster's ttl from the DCS's config key, else Patroni's default.
    std::chrono::seconds ttl() const;
    lock_observation observe_lock(std::chrono::steady_clock::time_point now);
    void ask_cluster(std::optional<member_id> not_this);
    void tick();
    void refresh_dcs_state();
    topology_ptr rebuild();
    /// Rebuilds, and publishes when routing differs from what was published last.
    void update();
    void route(const topology_ptr& next);
    bool unsettled() const;
    /// health.handback_guard: starts, keeps or ends the guard over an old
    /// leader whose lease expired while its API hung (etcd3, Patroni before
    /// 3.0.3); while it holds, rebuild() holds new writes and names the
    /// member `fenced` (its sessions pause).
    void guard_handback(const lock_observation& l, std::chrono::steady_clock::time_point now);
    /// How long a guard lasts: health.handback_guard, else twice the ttl.
    std::chrono::milliseconds handback_limit() const;

    net::io_context& control_;
    conf::config_ptr cfg_;
    publisher publish_;
    std::vector<member_slot> slots_;            ///< file members in the file's order, then discovered ones by name
    std::map<std::string, member_id> ids_;      ///< every name seen, for good
    member_id next_id_ = 1;
    const std::string health_area_;   ///< its log lines' component: "health", or "health[label]"
    const std::string dcs_area_;
    /// One cluster of several: a previous process's answers must be of our scope.
    const bool one_of_several_;
    bool started_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);   ///< for callbacks that may outlive us
    std::map<std::string, std::string> pending_seeds_;              ///< upgrade answers of members not known yet

    // The DCS.
    std::shared_ptr<dcs_watcher> watcher_;
    dcs_view dcs_view_;
    bool have_dcs_view_ = false;
    bool was_fresh_ = false;
    std::optional<std::chrono::steady_clock::time_point> failover_since_;   ///< when the hold began
    std::optional<std::string> confirming_;     ///< a new lock holder not yet answering as primary
    std::chrono::steady_clock::time_point confirming_since_{};
    struct handback {
        std::string name;
        member_id id = 0;
        std::chrono::steady_clock::time_point since{};
    };
    std::optional<handback> handback_;
    bool reconcile_pending_ = false;   ///< a guard ended: the slot it kept may go
    std::set<std::string> unusable_;            ///< members already logged as lacking an address
    mutable std::mutex dcs_mutex_;
    std::optional<dcs_state> dcs_state_;

    // GET /cluster, while the DCS cannot be read.
    struct cluster_answer {
        std::optional<std::string> holder;
        std::chrono::steady_clock::time_point at{};
        std::string from;
    };
    std::optional<cluster_answer> cluster_;
    std::size_t cluster_turn_ = 0;
    bool cluster_asking_ = false;
    std::chrono::steady_clock::time_point cluster_asked_{};

    net::steady_timer tick_timer_;
    std::atomic<topology_ptr> latest_;
    topology_ptr routed_;  ///< last snapshot handed to `publish`
    eligibility eligibility_;   ///< each listener's class, with the lag hysteresis
    std::uint64_t generation_ = 0;
    std::atomic<std::uint64_t> split_brain_events_{0};
    std::atomic<std::uint64_t> leader_changes_{0};
    std::optional<std::chrono::steady_clock::time_point> leaderless_since_;
    mutable std::mutex change_mutex_;   ///< guards last_change_ for readers on other threads
    leader_change last_change_;
};

}  // namespace patroxy::health
