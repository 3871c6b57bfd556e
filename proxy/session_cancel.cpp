// A CancelRequest, passed on to the member (or members) that may run the session it names.
#include "proxy/session.hpp"

#include "proxy/worker.hpp"

namespace patroxy::proxy {

// The server ignores a key that is not its own, so a cancel goes to every
// member the client's session could be on.
void session::forward_cancel() {
    phase_ = phase::cancelling;
    const auto& topo = owner_.topology();
    const auto& l = listener();
    if (const auto owner = owner_.cancels().owner(packet_->cancel)) {
        cancel_targets_.push_back(*owner);  // a plaintext session told us whose key it is
    } else if (l.role == conf::listener_role::write) {
        if (topo.leader) {
            cancel_targets_.push_back(*topo.leader);
        }
    } else {
        for (const auto m : l.members) {
            if (topo.keeps_read(m)) {
                cancel_targets_.push_back(m);
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
    member_ = cancel_targets_[cancel_next_++];
    first_sent_ = 0;
    arm(owner_.config().timeouts.connect, close_reason::connect_failed);
    if (open_to(*member_)) {
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
