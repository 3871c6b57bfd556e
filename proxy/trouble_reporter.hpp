#pragma once
// The data plane's word to the health monitor: a session could not use a
// member (connect refused or timed out, reset before answering, FATAL 57P03).
// Patroni's answer still decides the member's role; this only makes the
// monitor ask now instead of at the member's next regular check (HAProxy's
// `observe layer4` with `on-error fastinter` does the same). At most one
// report per member per `min_gap`, whatever the number of failing sessions.
// Any thread.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace patroxy::proxy {

class trouble_reporter {
public:
    using sink = std::function<void(std::size_t member)>;
    static constexpr std::chrono::milliseconds min_gap{100};

    explicit trouble_reporter(std::size_t members) : last_(members) {}

    /// Where reports go (set once, before the workers start).
    void set_sink(sink s) { sink_ = std::move(s); }

    void report(std::size_t member) {
        using namespace std::chrono;
        const auto now = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
        auto seen = last_[member].load(std::memory_order_relaxed);
        if (now - seen < min_gap.count() ||
            !last_[member].compare_exchange_strong(seen, now, std::memory_order_relaxed)) {
            return;  // reported a moment ago, here or by another worker
        }
        if (sink_) {
            sink_(member);
        }
    }

private:
    std::vector<std::atomic<std::int64_t>> last_;  ///< per member: ms of the last report
    sink sink_;
};

}  // namespace patroxy::proxy
