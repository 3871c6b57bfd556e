#pragma once
// The VRRPv3 state machine of RFC 5798 section 6.4, pure: events in (with the
// time they happen), actions out, no sockets and no clock of its own. The
// driver (vrrp_instance) turns actions into packets, netlink calls and ARPs,
// and calls on_timer() at next_deadline().
//
// Beyond the RFC, as keepalived does: a FAULT state for a host that must not
// hold the VIP (priority tracking with weight 0), a pre-emption delay after
// start, and `on_master_dead` for a master whose host says its patroxy is gone.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace patroxy::vip {

enum class vrrp_state { initialize, backup, master, fault };
std::string_view to_string(vrrp_state s);

/// What the driver must do, in order.
struct vrrp_action {
    enum kind { send_advert, add_vip, remove_vip, send_garps } what;
    int priority = 0;   ///< send_advert: the priority to announce (0 when resigning)
    bool operator==(const vrrp_action&) const = default;
};
using vrrp_actions = std::vector<vrrp_action>;

class vrrp_machine {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;
    using centiseconds = std::chrono::duration<std::int64_t, std::centi>;

    struct settings {
        int priority = 100;                          ///< configured, 1..254 (255: address owner)
        centiseconds advert_interval{100};
        bool preempt = true;
        std::chrono::milliseconds preempt_delay{0};  ///< after start, do not pre-empt for this long
        std::uint32_t primary_address = 0;           ///< ours, host order: breaks priority ties
    };

    explicit vrrp_machine(settings s);

    /// Startup event (6.4.1). `effective_priority` 0 starts in FAULT.
    vrrp_actions start(time_point now, int effective_priority);
    /// A validated advertisement from `src` (host order).
    vrrp_actions on_advert(time_point now, std::uint32_t src, int priority, centiseconds interval);
    /// Timers due at `now` (Adver_Timer as master, Master_Down_Timer as backup).
    vrrp_actions on_timer(time_point now);
    /// patroxy's own health moved the priority; 0 means FAULT (never hold the VIP).
    vrrp_actions set_priority(time_point now, int effective_priority);
    /// The master's host refused our probe of its patroxy: take over now
    /// rather than after Master_Down_Interval (backup only).
    vrrp_actions on_master_dead(time_point now);
    /// Shutdown event: a master resigns with priority 0 (6.4.3), then Initialize.
    vrrp_actions shutdown(time_point now);
    /// A binary upgrade: the previous process was master and the VIP is on the
    /// interface, so this one is master at once and advertises now (no gap,
    /// no priority 0 in between). Effective priority 0 stands down instead.
    vrrp_actions adopt_master(time_point now, int effective_priority);
    /// New settings from a reload (priority, interval, pre-emption); a master
    /// re-announces at once so that backups learn them.
    vrrp_actions reconfigure(time_point now, settings s, int effective_priority);

    vrrp_state state() const { return state_; }
    int priority() const { return priority_; }
    /// When on_timer() must run next; nullopt when no timer runs.
    std::optional<time_point> next_deadline() const { return deadline_; }
    /// The master we listen to as backup (host order), once one advertised.
    std::optional<std::uint32_t> master_address() const { return master_; }
    centiseconds master_advert_interval() const { return master_interval_; }
    /// RFC 5798 6.1: Skew_Time and Master_Down_Interval from what the master announced.
    centiseconds skew_time() const;
    centiseconds master_down_interval() const;

private:
    vrrp_actions become_master(time_point now);
    void become_backup(time_point now);
    /// To FAULT or Initialize, resigning first if we were master.
    vrrp_actions stand_down(vrrp_state to);
    void listen_to(std::uint32_t src, centiseconds interval);
    bool may_preempt(time_point now) const;

    settings cfg_;
    vrrp_state state_ = vrrp_state::initialize;
    int priority_;
    centiseconds master_interval_;
    std::optional<time_point> deadline_;
    std::optional<std::uint32_t> master_;
    time_point started_{};
};

}  // namespace patroxy::vip
