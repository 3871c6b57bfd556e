#include "proxy/deadline_queue.hpp"

#include "proxy/session.hpp"

namespace patroxy::proxy {

deadline_queue::handle deadline_queue::add(clock::time_point when, std::shared_ptr<session> s) {
    const auto h = entries_.emplace(when, std::move(s));
    if (when < armed_for_) {
        arm(when);
    }
    return h;
}

void deadline_queue::arm(clock::time_point when) {
    armed_for_ = when;
    timer_.expires_at(when);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {  // operation_aborted: moved to an earlier deadline
            fire_due();
        }
    });
}

void deadline_queue::fire_due() {
    armed_for_ = clock::time_point::max();
    const auto now = clock::now();
    // A session's handler may add (or remove) deadlines while we walk.
    while (!entries_.empty() && entries_.begin()->first <= now) {
        auto s = std::move(entries_.begin()->second);
        entries_.erase(entries_.begin());
        s->on_deadline();
    }
    if (!entries_.empty() && entries_.begin()->first < armed_for_) {
        arm(entries_.begin()->first);
    }
}

}  // namespace patroxy::proxy
