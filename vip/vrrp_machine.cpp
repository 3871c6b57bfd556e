#include "vip/vrrp_machine.hpp"

namespace patroxy::vip {

std::string_view to_string(vrrp_state s) {
    switch (s) {
    case vrrp_state::initialize: return "initialize";
    case vrrp_state::backup: return "backup";
    case vrrp_state::master: return "master";
    case vrrp_state::fault: return "fault";
    }
    return "?";
}

vrrp_machine::vrrp_machine(settings s)
    : cfg_(s), priority_(s.priority), master_interval_(s.advert_interval) {}

vrrp_machine::centiseconds vrrp_machine::skew_time() const {
    // 6.1: ((256 - Priority) * Master_Adver_Interval) / 256
    return centiseconds{(256 - priority_) * master_interval_.count() / 256};
}

vrrp_machine::centiseconds vrrp_machine::master_down_interval() const {
    return 3 * master_interval_ + skew_time();
}

bool vrrp_machine::may_preempt(time_point now) const {
    return cfg_.preempt && now >= started_ + cfg_.preempt_delay;
}

vrrp_actions vrrp_machine::start(time_point now, int effective_priority) {
    started_ = now;
    priority_ = effective_priority;
    master_interval_ = cfg_.advert_interval;
    master_.reset();
    if (priority_ == 0) {
        state_ = vrrp_state::fault;
        deadline_.reset();
        return {};
    }
    if (priority_ == 255) {
        return become_master(now);  // 6.4.1: the address owner starts as master
    }
    become_backup(now);
    return {};
}

vrrp_actions vrrp_machine::become_master(time_point now) {
    state_ = vrrp_state::master;
    master_.reset();
    deadline_ = now + cfg_.advert_interval;
    return {{vrrp_action::add_vip}, {vrrp_action::send_advert, priority_}, {vrrp_action::send_garps}};
}

void vrrp_machine::become_backup(time_point now) {
    state_ = vrrp_state::backup;
    deadline_ = now + master_down_interval();
}

void vrrp_machine::listen_to(std::uint32_t src, centiseconds interval) {
    master_ = src;
    // 6.4.2: a backup learns the master's interval (and with it its timers).
    if (interval.count() > 0) {
        master_interval_ = interval;
    }
}

vrrp_actions vrrp_machine::on_advert(time_point now, std::uint32_t src, int priority, centiseconds interval) {
    switch (state_) {
    case vrrp_state::backup:
        if (priority == 0) {
            // 6.4.2: the master resigned; take over after Skew_Time.
            master_ = src;
            deadline_ = now + skew_time();
        } else if (!may_preempt(now) || priority >= priority_) {
            listen_to(src, interval);
            deadline_ = now + master_down_interval();
        }
        // else: a lower priority master we will pre-empt when the timer fires.
        return {};
    case vrrp_state::master:
        if (priority == 0) {
            // 6.4.3: another master resigned; answer at once so backups hear us.
            deadline_ = now + cfg_.advert_interval;
            return {{vrrp_action::send_advert, priority_}};
        }
        if (priority > priority_ || (priority == priority_ && src > cfg_.primary_address)) {
            listen_to(src, interval);
            become_backup(now);
            return {{vrrp_action::remove_vip}};
        }
        // Lower: another host thinks it is master (a healed split). Answer at
        // once so it steps down, and re-announce the VIP: clients may have
        // learned its MAC meanwhile.
        deadline_ = now + cfg_.advert_interval;
        return {{vrrp_action::send_advert, priority_}, {vrrp_action::send_garps}};
    case vrrp_state::initialize:
    case vrrp_state::fault:
        return {};
    }
    return {};
}

vrrp_actions vrrp_machine::on_timer(time_point now) {
    if (!deadline_ || now < *deadline_) {
        return {};
    }
    if (state_ == vrrp_state::master) {
        deadline_ = now + cfg_.advert_interval;
        return {{vrrp_action::send_advert, priority_}};
    }
    if (state_ == vrrp_state::backup) {
        return become_master(now);  // Master_Down_Timer fired
    }
    deadline_.reset();
    return {};
}

vrrp_actions vrrp_machine::set_priority(time_point now, int effective_priority) {
    if (state_ == vrrp_state::initialize) {
        priority_ = effective_priority;  // start() decides
        return {};
    }
    if (effective_priority == priority_) {
        return {};
    }
    const auto was = state_;
    priority_ = effective_priority;
    if (priority_ == 0) {
        return stand_down(vrrp_state::fault);
    }
    if (was == vrrp_state::fault) {
        master_interval_ = cfg_.advert_interval;
        become_backup(now);
        return {};
    }
    if (was == vrrp_state::master) {
        // Tell the backups now: a higher one pre-empts without waiting a whole interval.
        deadline_ = now + cfg_.advert_interval;
        return {{vrrp_action::send_advert, priority_}};
    }
    return {};
}

vrrp_actions vrrp_machine::on_master_dead(time_point now) {
    if (state_ != vrrp_state::backup) {
        return {};
    }
    return become_master(now);
}

vrrp_actions vrrp_machine::shutdown(time_point) { return stand_down(vrrp_state::initialize); }

vrrp_actions vrrp_machine::adopt_master(time_point now, int effective_priority) {
    started_ = now;
    priority_ = effective_priority;
    master_interval_ = cfg_.advert_interval;
    if (priority_ == 0) {
        state_ = vrrp_state::master;  // stands down from master: resigns and removes the VIP
        return stand_down(vrrp_state::fault);
    }
    state_ = vrrp_state::master;
    master_.reset();
    deadline_ = now + cfg_.advert_interval;
    // The address is there already (add is idempotent); no ARPs: it did not move.
    return {{vrrp_action::add_vip}, {vrrp_action::send_advert, priority_}};
}

vrrp_actions vrrp_machine::reconfigure(time_point now, settings s, int effective_priority) {
    s.primary_address = cfg_.primary_address;
    const bool interval_changed = s.advert_interval != cfg_.advert_interval;
    cfg_ = s;
    auto out = set_priority(now, effective_priority);
    if (state_ == vrrp_state::master && interval_changed && out.empty()) {
        deadline_ = now + cfg_.advert_interval;
        out.push_back({vrrp_action::send_advert, priority_});
    }
    if (state_ == vrrp_state::backup && interval_changed) {
        master_interval_ = master_ ? master_interval_ : cfg_.advert_interval;
    }
    return out;
}

vrrp_actions vrrp_machine::stand_down(vrrp_state to) {
    const auto was = state_;
    state_ = to;
    deadline_.reset();
    master_.reset();
    if (was == vrrp_state::master) {
        // 6.4.3: resign with priority 0 so a backup takes over after Skew_Time.
        return {{vrrp_action::send_advert, 0}, {vrrp_action::remove_vip}};
    }
    return {};
}

}  // namespace patroxy::vip
