#include "health/member_tracker.hpp"

namespace patroxy::health {

void hysteresis::record(bool ok) {
    const int top = rise_ + fall_ - 1;
    if (ok) {
        if (health_ < top) {
            ++health_;
        }
        if (health_ == rise_) {
            health_ = top;  // just came up: the next failures count a full `fall`
        }
    } else {
        if (health_ > 0) {
            --health_;
        }
        if (health_ == rise_ - 1 && rise_ > 0) {
            health_ = 0;  // just went down: coming back takes a full `rise`
        }
    }
}

void hysteresis::set_thresholds(int rise, int fall) {
    const bool was_up = up();
    rise_ = rise;
    fall_ = fall;
    health_ = was_up ? rise_ + fall_ - 1 : 0;
}

void member_tracker::seed_up(check_result r, steady_time) {
    checks_.set_up();
    ever_up_ = true;
    report_ = r.report;
    if (report_ && !report_->patroni_version.empty()) {
        patroni_version_ = report_->patroni_version;
    }
    last_ = std::move(r);
    last_change_ = last_.at;
    moved_ = true;
}

namespace {
bool same_view(const std::optional<patroni_report>& a, const std::optional<patroni_report>& b) {
    if (a.has_value() != b.has_value()) {
        return false;
    }
    if (!a) {
        return true;
    }
    return a->role == b->role && a->state == b->state && a->noloadbalance == b->noloadbalance &&
           a->timeline == b->timeline && a->pause == b->pause;
}
}  // namespace

bool member_tracker::record(check_result r, steady_time now) {
    const bool was_up = checks_.up();
    checks_.record(r.answered);
    auto next = report_;
    if (!checks_.up()) {
        next.reset();
    } else if (r.answered) {
        next = r.report;
    }  // else: a failure inside the fall window keeps the last known answer
    moved_ = !same_view(report_, next) || was_up != checks_.up();
    if (moved_) {
        last_change_ = r.at;
    }
    if (was_up && !checks_.up()) {
        down_since_ = now;
    } else if (!was_up && checks_.up() && down_since_) {
        downtime_ += std::chrono::duration_cast<std::chrono::milliseconds>(now - *down_since_);
        down_since_.reset();
    }
    report_ = std::move(next);
    if (r.answered && !r.report->patroni_version.empty()) {
        patroni_version_ = r.report->patroni_version;
    }
    hangs_ = r.hung || (hangs_ && r.connect_timed_out);
    last_ = std::move(r);
    ever_up_ = ever_up_ || checks_.up();
    return moved_;
}

bool member_tracker::lets_go() const {
    if (last_.answered) {
        return !(last_.report->claims_leadership() && last_.report->running());
    }
    return last_.refused;
}

bool member_tracker::changing() const {
    return moved_ || checks_.changing() || (report_ && !report_->running());
}

std::chrono::milliseconds member_tracker::downtime(steady_time now) const {
    auto total = downtime_;
    if (down_since_) {
        total += std::chrono::duration_cast<std::chrono::milliseconds>(now - *down_since_);
    }
    return total;
}

}  // namespace patroxy::health
