#include "proxy/balancer.hpp"

#include <algorithm>

namespace patroxy::proxy {
namespace {
bool allowed(const conf::listener_config& l, std::size_t member) {
    return std::find(l.members.begin(), l.members.end(), member) != l.members.end();
}
}  // namespace

std::vector<std::size_t> candidates(const health::topology& topo, const conf::listener_config& listener,
                                    bool read_fallback, std::size_t turn) {
    std::vector<std::size_t> out;
    const bool leader_ok = topo.leader && allowed(listener, *topo.leader);
    if (listener.role == conf::listener_role::write) {
        if (leader_ok) {
            out.push_back(*topo.leader);
        }
        return out;
    }
    for (const auto m : topo.readable) {
        if (allowed(listener, m)) {
            out.push_back(m);
        }
    }
    if (!out.empty()) {
        std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(turn % out.size()), out.end());
    } else if (read_fallback && leader_ok) {
        out.push_back(*topo.leader);
    }
    return out;
}

bool keeps_session(const health::topology& topo, conf::listener_role role, std::size_t member) {
    return role == conf::listener_role::write ? topo.keeps_write(member) : topo.keeps_read(member);
}

}  // namespace patroxy::proxy
