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

private:
    int rise_;
    int fall_;
    int health_;
};

class member_tracker {
public:
    member_tracker(int rise, int fall) : checks_(rise, fall) {}

    /// Takes one check result; returns true if the member's routing-relevant
    /// view (up/down, role, state, tags) changed.
    bool record(check_result r, steady_time now);

    bool up() const { return checks_.up(); }
    /// The last answer while the member is up; empty once it is down.
    const std::optional<patroni_report>& report() const { return report_; }
    const check_result& last() const { return last_; }
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
    bool moved_ = false;
    wall_time last_change_{};
    std::optional<steady_time> down_since_;
    std::chrono::milliseconds downtime_{0};
};

}  // namespace patroxy::health
