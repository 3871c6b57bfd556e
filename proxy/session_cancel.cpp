// A CancelRequest, passed on to the member (or members) that may run the session it names.
#include "proxy/session.hpp"

#include "proxy/balancer.hpp"
#include "proxy/worker.hpp"

namespace patroxy::proxy {

// The server ignores a key that is not its own, so a cancel goes to every
// member the client's session could be on.
void session::forward_cancel() {
    phase_ = phase::cancelling;
    const auto* cluster = cluster_now();
    const auto& l = listener();
    if (const auto owner = owner_.cancels().owner(packet_->cancel)) {
        cancel_targets_.emplace_back(owner->member, owner->endpoint);  // a plaintext session told us whose key it is
    } else if (cluster != nullptr) {
        // Its own class, and each fallback it may have been routed by (keeps_session checks them all).
        const auto& topo = *cluster->topology;
        for (std::size_t at = 0; at < topo.members.size(); ++at) {
            const auto& m = topo.members[at];
            if (l.allows(m.name) &&
                (keeps_session(topo, l, l.role, m.id) || keeps_while_api_fails(topo, l, l.role, m.id) ||
                 topo.fenced == m.id)) {
                cancel_targets_.emplace_back(m.id, cluster->endpoints[at]);
            }
        }
    }
    next_cancel_target();
}

void session::next_cancel_target() {
    server_.reset();
    if (cancel_next_ >= cancel_targets_.size()) {
        return close(close_reason::cancel_forwarded, std::to_string(cancel_targets_.size()) + " member(s)");
    }
    const auto& [member, endpoint] = cancel_targets_[cancel_next_++];
    member_ = member;
    first_sent_ = 0;
    arm(timeouts().connect, close_reason::connect_failed);
    if (open_to(endpoint)) {
        return next_cancel_target();
    }
    // Not sent at once even on loopback: the socket reports when it is connected.
}

void session::send_cancel() {
    if (send_rest_of_first() != progress::waiting) {
        next_cancel_target();  // sent, or that member cannot be reached: the next
    }
}

}  // namespace patroxy::proxy
