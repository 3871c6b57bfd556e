#pragma once
// The data plane's word to the health monitor: a session could not use a
// member (connect refused or timed out, reset before answering, FATAL 57P03).
// Patroni's answer still decides the member's role; this only makes the
// monitor ask now instead of at the member's next regular check (HAProxy's
// `observe layer4` with `on-error fastinter` does the same). At most one
// report per member per `min_gap`, whatever the number of failing sessions.
// Any thread; reports are rare (failures), so a lock is fine here.

#include "health/topology.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace patroxy::proxy {

class trouble_reporter {
public:
    using sink = std::function<void(health::member_id member)>;
    static constexpr std::chrono::milliseconds min_gap{100};

    /// Where reports go (set once, before the workers start).
    void set_sink(sink s) { sink_ = std::move(s); }

    void report(health::member_id member) {
        const auto now = std::chrono::steady_clock::now();
        {
            const std::lock_guard lock(mutex_);
            auto [it, fresh] = last_.try_emplace(member, now);
            if (!fresh) {
                if (now - it->second < min_gap) {
                    return;  // reported a moment ago, here or by another worker
                }
                it->second = now;
            }
        }
        if (sink_) {
            sink_(member);
        }
    }

private:
    std::mutex mutex_;
    std::unordered_map<health::member_id, std::chrono::steady_clock::time_point> last_;
    sink sink_;
};

}  // namespace patroxy::proxy
