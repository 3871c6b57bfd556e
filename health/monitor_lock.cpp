// The monitor's view of the lock: the DCS's key (or a member's GET /cluster
// copy of it), and the handback guard over an old leader that may take it back.
#include "health/monitor.hpp"

#include "base/log.hpp"
#include "base/text.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace patroxy::health {

namespace {
// patroni/patroni#2689, fixed in 3.0.3: a leader whose loop stalled past the
// ttl writes the leader key back without a compare when it resumes.
bool writes_key_back(const std::string& version) {
    // "3.0.2", "3.0.2.dev0", "3.0": the leading numbers; unknown is not taken for old.
    std::array<int, 3> v{0, 0, 0};
    const char* at = version.data();
    const char* const end = version.data() + version.size();
    std::size_t parts = 0;
    while (parts < v.size() && at < end) {
        const auto [next, ec] = std::from_chars(at, end, v[parts]);
        if (ec != std::errc{}) {
            break;
        }
        ++parts;
        at = next;
        if (at == end || *at != '.') {
            break;
        }
        ++at;
    }
    return parts >= 2 && v < std::array<int, 3>{3, 0, 3};
}
}  // namespace

lock_observation monitor::observe_lock(std::chrono::steady_clock::time_point now) {
    if (dcs_fresh(now)) {
        lock_observation l;
        l.from = lock_observation::source::dcs;
        l.holder = dcs_view_.leader;
        const auto& f = dcs_view_.failover;
        const bool due = f && (!f->scheduled_at || *f->scheduled_at <= std::chrono::system_clock::now());
        const bool away = f && (!l.holder || (f->leader.empty() ? *l.holder != f->member : *l.holder == f->leader));
        if (due && away) {
            if (!failover_since_) {
                failover_since_ = now;
            }
            // A key Patroni never cleans up holds writes for two ttls at most.
            l.changing = now - *failover_since_ < 2 * ttl();
        } else {
            failover_since_.reset();
        }
        return l;
    }
    const auto fresh_for = 2 * cfg_->health.interval + cfg_->health.timeout;
    if (cluster_ && now - cluster_->at < fresh_for) {
        lock_observation l;
        l.from = lock_observation::source::cluster;
        l.holder = cluster_->holder;
        return l;
    }
    return {};
}

void monitor::ask_cluster(std::optional<member_id> not_this) {
    const auto now = std::chrono::steady_clock::now();
    if (cluster_asking_ && now - cluster_asked_ < cfg_->health.timeout + std::chrono::seconds{1}) {
        return;  // one at a time (a stopped client never answers: the time bounds it)
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        auto& s = slots_[(cluster_turn_ + i) % slots_.size()];
        if (!s.tracker.up() || (not_this && s.id == *not_this)) {
            continue;
        }
        cluster_turn_ = (cluster_turn_ + i + 1) % slots_.size();
        cluster_asking_ = true;
        cluster_asked_ = now;
        s.client->ask_cluster([this, alive = std::weak_ptr<bool>(alive_), name = s.cfg.name](
                                  std::optional<std::string> holder, const std::string& error) {
            if (!alive.lock()) {
                return;
            }
            cluster_asking_ = false;
            if (!holder) {
                PATROXY_LOG(debug, health_area_) << name << ": GET /cluster failed: " << base::printable(error);
                return;
            }
            const auto before = cluster_ ? cluster_->holder : std::nullopt;
            cluster_ = cluster_answer{holder->empty() ? std::nullopt : std::move(holder), std::chrono::steady_clock::now(), name};
            if (before != cluster_->holder) {
                PATROXY_LOG(info, health_area_) << "the lock holder per " << name << "'s GET /cluster: "
                                            << base::printable(cluster_->holder.value_or("none"));
            }
            update();
        });
        return;
    }
}

bool monitor::may_hand_back(const member_slot& s) const {
    if (handback_) {
        return handback_->name == s.cfg.name;
    }
    const auto t = latest();
    return cfg_->dcs.enabled && cfg_->dcs.type == conf::dcs_config::kind::etcd3 && t && t->leader &&
           t->members[*t->leader].id == s.id && s.tracker.hangs() && writes_key_back(s.tracker.patroni_version());
}

std::chrono::milliseconds monitor::handback_limit() const {
    return cfg_->health.handback_guard.value_or(std::chrono::duration_cast<std::chrono::milliseconds>(2 * ttl()));
}

void monitor::guard_handback(const lock_observation& l, std::chrono::steady_clock::time_point now) {
    if (handback_) {
        const auto* slot = find(handback_->name);
        std::string why;
        if (slot == nullptr || slot->id != handback_->id) {
            why = "it left the member set";
        } else if (l.from == lock_observation::source::dcs && l.holder == handback_->name) {
            why = "it took the lock back: its sessions go on";
        } else if (slot->tracker.lets_go()) {
            const auto& last = slot->tracker.last();
            why = last.answered ? "it answers as " + base::printable(last.report->role_text) + ", " +
                                      base::printable(last.report->state)
                                : "its API refuses connections (" + last.error + ")";
        } else if (now >= handback_->since + handback_limit()) {
            why = "health.handback_guard passed";
        }
        if (!why.empty()) {
            PATROXY_LOG(warn, health_area_) << "handback guard over " << handback_->name << " ended: " << why;
            handback_.reset();
            reconcile_pending_ = true;   // a slot kept for it may go now
        }
        return;
    }
    // Only etcd3: Patroni's etcd v2 code writes the key with prevValue, and
    // without a DCS there is no lease to tell a stall by.
    const auto before = latest();   // the last snapshot built (routed_ may predate a change of source)
    if (!cfg_->dcs.enabled || cfg_->dcs.type != conf::dcs_config::kind::etcd3 || !before || !before->leader ||
        before->leader_source != lock_observation::source::dcs || l.from != lock_observation::source::dcs) {
        return;
    }
    const auto& old_leader = before->members[*before->leader];
    if (l.holder == old_leader.name) {
        return;
    }
    const auto* slot = find(old_leader.name);
    // Patroni puts its member key on the leader's lease: a key still there
    // means its loop released the lock itself (a switchover), not a stall.
    if (slot == nullptr || slot->id != old_leader.id || dcs_view_.members.count(old_leader.name) > 0 ||
        !may_hand_back(*slot) || handback_limit().count() <= 0) {
        return;
    }
    handback_ = handback{old_leader.name, old_leader.id, now};
    PATROXY_LOG(warn, health_area_) << "the lock left " << old_leader.name << " with its lease while its API hangs ("
                                    << slot->tracker.last().error << "), and its Patroni "
                                    << base::printable(slot->tracker.patroni_version())
                                    << " may write the key back when it resumes (patroni#2689, fixed in 3.0.3): "
                                    << "new writes wait and its sessions pause for up to "
                                    << std::chrono::duration_cast<std::chrono::seconds>(handback_limit()).count()
                                    << " s, until it answers demoted or takes the lock back";
}

}  // namespace patroxy::health
