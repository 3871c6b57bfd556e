#include "proxy/books.hpp"

namespace patroxy::proxy {

listener_book& book_registry::listener(const std::string& name) {
    const std::lock_guard lock(mutex_);
    auto& slot = listeners_[name];
    if (!slot) {
        slot = std::make_unique<listener_book>(name, workers_);
    }
    return *slot;
}

member_book& book_registry::member(listener_book& l, const std::string& name) {
    const std::lock_guard lock(mutex_);
    auto& slot = l.members_[name];
    if (!slot) {
        slot = std::make_unique<member_book>(name, workers_);
    }
    return *slot;
}

std::map<std::string, listener_totals> book_registry::totals() const {
    const std::lock_guard lock(mutex_);
    std::map<std::string, listener_totals> out;
    for (const auto& [name, book] : listeners_) {
        auto& t = out[name];
        t.peak = static_cast<std::uint64_t>(book->peak.load(std::memory_order_relaxed));
        for (std::size_t w = 0; w < workers_; ++w) {
            const auto& c = book->per_worker[w].value;
            t.accepted += read(c.accepted);
            t.current += read(c.current);
            t.held += read(c.held);
            t.bytes_in += read(c.bytes_in);
            t.bytes_out += read(c.bytes_out);
            for (std::size_t r = 0; r < close_reason_count; ++r) {
                t.closed[r] += read(c.closed[r]);
            }
        }
        for (const auto& [member, mb] : book->members_) {
            auto& m = t.members[member];
            m.peak = static_cast<std::uint64_t>(mb->peak.load(std::memory_order_relaxed));
            for (std::size_t w = 0; w < workers_; ++w) {
                const auto& c = mb->per_worker[w].value;
                m.current += read(c.current);
                m.total += read(c.total);
                m.connect_errors += read(c.connect_errors);
                m.bytes_in += read(c.bytes_in);
                m.bytes_out += read(c.bytes_out);
            }
        }
    }
    return out;
}

}  // namespace patroxy::proxy
