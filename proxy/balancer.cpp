#include "proxy/balancer.hpp"

#include "proxy/books.hpp"

#include <algorithm>
#include <limits>

namespace patroxy::proxy {

namespace {

bool has_tags(const health::member_view& m, const conf::tag_selector& wanted) {
    if (!m.report) {
        return false;
    }
    return std::all_of(wanted.begin(), wanted.end(), [&](const auto& kv) {
        const auto it = m.report->tags.find(kv.first);
        return it != m.report->tags.end() && it->second == kv.second;
    });
}

int sessions_on(std::span<member_book* const> books, std::size_t at) {
    return at < books.size() && books[at] != nullptr ? books[at]->routed.load(std::memory_order_relaxed) : 0;
}

// Rotates `out` so that the turn's member leads, each member leading for
// `weight` turns out of the sum of weights.
void rotate_weighted(std::vector<std::size_t>& out, const health::topology& topo, std::size_t turn) {
    std::size_t total = 0;
    bool equal = true;
    for (const auto i : out) {
        total += static_cast<std::size_t>(topo.members[i].weight);
        equal = equal && topo.members[i].weight == topo.members[out.front()].weight;
    }
    if (total == 0) {
        return;
    }
    std::size_t lead = turn % out.size();
    if (!equal) {
        auto t = turn % total;
        for (lead = 0; lead < out.size(); ++lead) {
            const auto w = static_cast<std::size_t>(topo.members[out[lead]].weight);
            if (t < w) {
                break;
            }
            t -= w;
        }
    }
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(lead), out.end());
}

}  // namespace

choice candidates(const health::topology& topo, const conf::listener_config& listener, std::size_t turn,
                  std::span<member_book* const> books) {
    choice c;
    const auto* cls = topo.class_of(listener.name);
    if (cls == nullptr) {
        return c;
    }
    c.members = cls->routed(&c.via);
    c.role = cls->role_at(c.via);
    if (c.members.empty()) {
        return c;
    }
    if (!listener.prefer.empty()) {
        std::vector<std::size_t> preferred;
        std::copy_if(c.members.begin(), c.members.end(), std::back_inserter(preferred),
                     [&](std::size_t i) { return has_tags(topo.members[i], listener.prefer); });
        if (!preferred.empty()) {
            c.members = std::move(preferred);
        }
    }
    if (c.members.size() > 1) {
        switch (listener.balance) {
        case conf::balance_mode::roundrobin:
            rotate_weighted(c.members, topo, turn);
            break;
        case conf::balance_mode::leastconn: {
            // Each member's count read once: other workers move the live
            // counters while this sorts, and a comparator reading them would
            // not be a strict weak order (std::stable_sort then ran off the
            // front of the range and crashed the worker, bench/RESULTS-routing.md).
            struct load {
                double per_weight;    ///< sessions per unit of weight; weight 0: last
                std::size_t rank;     ///< after the turn's rotation: breaks ties
                std::size_t member;
            };
            thread_local std::vector<load> loads;
            loads.clear();
            const auto n = c.members.size();
            const auto start = turn % n;
            for (std::size_t k = 0; k < n; ++k) {
                const auto m = c.members[(start + k) % n];
                const int w = topo.members[m].weight;
                loads.push_back({w > 0 ? static_cast<double>(sessions_on(books, m)) / w
                                       : std::numeric_limits<double>::infinity(),
                                 k, m});
            }
            // Fewest sessions per unit of weight; the rotation breaks ties.
            std::sort(loads.begin(), loads.end(), [](const load& a, const load& b) {
                return a.per_weight != b.per_weight ? a.per_weight < b.per_weight : a.rank < b.rank;
            });
            for (std::size_t k = 0; k < n; ++k) {
                c.members[k] = loads[k].member;
            }
            break;
        }
        case conf::balance_mode::first:
            break;  // member order
        }
    }
    const auto before = c.members.size();
    std::erase_if(c.members, [&](std::size_t i) {
        const int limit = topo.members[i].maxconn;
        return limit > 0 && sessions_on(books, i) >= limit;
    });
    c.full = before > 0 && c.members.empty();
    return c;
}

bool keeps_session(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                   health::member_id member) {
    if (topo.keeps(role, member)) {
        return true;
    }
    // A role the listener may fall back to: a read session on a replica just
    // promoted stays when reads may use the leader.
    return std::any_of(listener.fallback.begin(), listener.fallback.end(),
                       [&](conf::listener_role r) { return topo.keeps(r, member); });
}

bool keeps_while_api_fails(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                           health::member_id member) {
    const auto at = topo.position(member);
    if (!at || (role != conf::listener_role::read && role != conf::listener_role::any) || listener.max_lag.any()) {
        return false;
    }
    const auto& m = topo.members[*at];
    return !m.up && m.dcs_replica && !m.host.empty();
}

std::string drain_reason(const health::topology& topo, const conf::listener_config& listener, conf::listener_role role,
                         health::member_id member) {
    const auto* cls = topo.class_of(listener.name);
    const auto at = topo.position(member);
    if (!conf::routes_replicas(role) || cls == nullptr || !at || cls->still_eligible(role, *at)) {
        return {};
    }
    if (topo.leader && *topo.leader == *at) {
        return {};  // on the leader by `any`: it leads still
    }
    if (cls->excluded_by_members_only(member)) {
        return {};  // a reload narrowed the listener's members: for new sessions only
    }
    auto why = cls->why_excluded(member);
    if (why.empty()) {
        why = "no longer in class '" + std::string(conf::to_string(role)) + "'";
    }
    return "member " + topo.members[*at].name + " left listener '" + listener.name + "': " + why;
}

bool reserve(member_book& book, int maxconn) {
    if (maxconn <= 0) {
        book.routed.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    for (int now = book.routed.load(std::memory_order_relaxed); now < maxconn;) {
        if (book.routed.compare_exchange_weak(now, now + 1, std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

}  // namespace patroxy::proxy
