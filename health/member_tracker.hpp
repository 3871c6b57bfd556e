#pragma once
// One member's check history: HAProxy's rise/fall hysteresis for failed checks,
// and Patroni's definite answers taken at face value. A failed check (timeout,
// refused, HTTP error, garbage) is maybe-flaky and counts toward `fall`; an
// answer that parses ("I am a replica now") changes the role at once.

#include "health/patroni_report.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace patroxy::health {

using steady_time = std::chrono::steady_clock::time_point;
using wall_time = std::chrono::system_clock::time_point;

/// One finished check of a member's REST API.
struct check_result {
    bool answered = false;                 ///< a parsable Patroni answer arrived
    std::optional<patroni_report> report;  ///< set when answered
    int http_status = 0;                   ///< 0 when no HTTP answer at all
    std::string error;                     ///< why the check failed
    std::chrono::milliseconds duration{0};
    wall_time at{};
    steady_time steady_at{};               ///< the same moment on the steady clock (lag arithmetic)
    std::string body;                      ///< the answer as it came, when it parsed
    /// Connected afresh, then no answer in time: the process behind the port
    /// is alive to its kernel but stuck (stopped, or waiting on a frozen
    /// PostgreSQL), and may carry on where it stopped.
    bool hung = false;
    bool refused = false;                  ///< nothing listens on the port
    bool connect_timed_out = false;        ///< no handshake in time: a host gone, cut off, or a full backlog
};

/// HAProxy's check health counter: in [0, rise+fall-1], up iff >= rise.
/// Down after `fall` consecutive failures, up after `rise` consecutive successes.
class hysteresis {
public:
    /// Starts one success short of up: a member that answers at startup is
    /// routed to at once, one that does not is never assumed up.
    hysteresis(int rise, int fall) : rise_(rise), fall_(fall), health_(rise - 1) {}
    void record(bool ok);
    bool up() const { return health_ >= rise_; }
    /// Strictly between the ends: a state change is in progress.
    bool changing() const { return health_ != 0 && health_ != rise_ + fall_ - 1; }
    int health() const { return health_; }
    int rise() const { return rise_; }
    int fall() const { return fall_; }
    /// New thresholds (a reload): an up member stays up at the top, a down one at 0.
    void set_thresholds(int rise, int fall);
    /// Up at the top of the range (what a previous process knew).
    void set_up() { health_ = rise_ + fall_ - 1; }

private:
    int rise_;
    int fall_;
    int health_;
};

class member_tracker {
public:
    member_tracker(int rise, int fall) : checks_(rise, fall) {}

    /// New rise/fall from a reload; the member keeps its state.
    void set_thresholds(int rise, int fall) { checks_.set_thresholds(rise, fall); }
    /// Takes a previous process's last answer as this member's own: up, with
    /// that report, until our first check says otherwise.
    void seed_up(check_result r, steady_time now);

    /// Takes one check result; returns true if the member's routing-relevant
    /// view (up/down, role, state, tags) changed.
    bool record(check_result r, steady_time now);

    bool up() const { return checks_.up(); }
    /// Was up at some point (or seeded so).
    bool ever_up() const { return ever_up_; }
    /// The last answer while the member is up; empty once it is down.
    const std::optional<patroni_report>& report() const { return report_; }
    const check_result& last() const { return last_; }
    /// The Patroni version of the last answer, kept while it is down.
    const std::string& patroni_version() const { return patroni_version_; }
    /// Its API hangs: a check since its last answer connected and got no
    /// answer, and none since refused or failed otherwise (a stopped process's
    /// backlog fills, so later connects time out: that keeps it).
    bool hangs() const { return hangs_; }
    /// Known to lead no more: the last check answered as anything but a
    /// running primary, or was refused (its Patroni is gone; a new one starts
    /// by reading the key).
    bool lets_go() const;
    const hysteresis& checks() const { return checks_; }
    /// Worth polling at fast_interval: in a rise/fall transition, or its role
    /// or state moved at the last check, or PostgreSQL is not running.
    bool changing() const;
    wall_time last_change() const { return last_change_; }
    /// Total time spent down, including the current outage.
    std::chrono::milliseconds downtime(steady_time now) const;

private:
    hysteresis checks_;
    std::optional<patroni_report> report_;
    check_result last_;
    std::string patroni_version_;
    bool hangs_ = false;
    bool moved_ = false;
    bool ever_up_ = false;
    wall_time last_change_{};
    std::optional<steady_time> down_since_;
    std::chrono::milliseconds downtime_{0};
};

}  // namespace patroxy::health
