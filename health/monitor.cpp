#include "health/monitor.hpp"

#include "app/log.hpp"

namespace patroxy::health {

monitor::monitor(net::io_context& control, const conf::config& cfg, publisher publish)
    : cfg_(cfg), publish_(std::move(publish)) {
    trackers_.reserve(cfg.members.size());
    for (std::size_t i = 0; i < cfg.members.size(); ++i) {
        trackers_.emplace_back(cfg.health.rise, cfg.health.fall);
        clients_.push_back(std::make_shared<patroni_client>(
            control, cfg.members[i], cfg.health.timeout, [this, i](check_result r) { return on_check(i, std::move(r)); }));
    }
    latest_.store(rebuild());
}

monitor::~monitor() { stop(); }

void monitor::start() {
    for (auto& c : clients_) {
        c->start();
    }
}

void monitor::stop() {
    for (auto& c : clients_) {
        c->stop();
    }
}

monitor::leader_change monitor::last_leader_change() const {
    std::lock_guard lock(change_mutex_);
    return last_change_;
}

void monitor::suspect(std::size_t member) {
    clients_[member]->check_within(std::chrono::milliseconds{0});
    if (latest()->leader == member) {
        for (auto& c : clients_) {
            c->check_within(cfg_.health.fast_interval);
        }
    }
}

bool monitor::unsettled() const {
    const auto t = latest();
    return !t->leader || t->split_brain();
}

topology_ptr monitor::rebuild() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<member_view> views;
    views.reserve(trackers_.size());
    for (std::size_t i = 0; i < trackers_.size(); ++i) {
        const auto& t = trackers_[i];
        member_view v;
        v.index = i;
        v.name = cfg_.members[i].name;
        v.up = t.up();
        v.health = t.checks().health();
        v.report = t.report();
        v.last_check = t.last();
        v.last_change = t.last_change();
        v.downtime = t.downtime(now);
        views.push_back(std::move(v));
    }
    return std::make_shared<const topology>(build_topology(++generation_, std::move(views), cfg_.health));
}

std::chrono::milliseconds monitor::on_check(std::size_t member, check_result r) {
    auto& tracker = trackers_[member];
    const auto& name = cfg_.members[member].name;
    const bool was_up = tracker.up();
    if (!r.answered) {
        PATROXY_LOG(debug, "health") << name << ": check failed: " << r.error;
    }
    tracker.record(std::move(r), std::chrono::steady_clock::now());
    if (!was_up && tracker.up()) {
        PATROXY_LOG(info, "health") << name << " is UP";
    } else if (was_up && !tracker.up()) {
        PATROXY_LOG(warn, "health") << name << " is DOWN after failed checks: " << tracker.last().error;
    }
    const auto next = rebuild();
    latest_.store(next, std::memory_order_release);
    if (!routed_ || !next->same_routing(*routed_)) {
        const auto name_of = [&](const std::optional<std::size_t>& i) {
            return i ? cfg_.members[*i].name : std::string("none");
        };
        std::string readers;
        for (auto i : next->readable) {
            readers += (readers.empty() ? "" : ",") + cfg_.members[i].name;
        }
        if (next->split_brain() && !(routed_ && routed_->split_brain())) {
            split_brain_events_.fetch_add(1, std::memory_order_relaxed);
            std::string who;
            for (auto i : next->leader_claimants) {
                who += (who.empty() ? "" : ",") + cfg_.members[i].name;
            }
            PATROXY_LOG(error, "health") << "split brain: " << who << " all claim leadership; writes routed to none";
        }
        if (routed_ && routed_->leader != next->leader) {
            leader_changes_.fetch_add(1, std::memory_order_relaxed);
            const auto now = std::chrono::steady_clock::now();
            if (!next->leader) {
                leaderless_since_ = now;
            } else {
                std::lock_guard lock(change_mutex_);
                last_change_.at = std::chrono::system_clock::now();
                last_change_.leaderless = leaderless_since_ ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                  now - *leaderless_since_)
                                                            : std::chrono::milliseconds{0};
                leaderless_since_.reset();
            }
        }
        PATROXY_LOG(info, "health") << "routing generation " << next->generation << ": leader=" << name_of(next->leader)
                                    << " readers=" << (readers.empty() ? "none" : readers);
        routed_ = next;
        publish_(next);
        // The cluster just changed: look at everyone soon rather than at their
        // next regular check.
        if (unsettled()) {
            for (auto& c : clients_) {
                c->check_within(cfg_.health.fast_interval);
            }
        }
    }
    return tracker.changing() || unsettled() ? cfg_.health.fast_interval : cfg_.health.interval;
}

}  // namespace patroxy::health
