// A session's drain: closed where it is idle between transactions, with the
// FATAL 57P01 a PostgreSQL fast shutdown sends (drivers reconnect on it), or
// at the drain's deadline whatever it is doing.
#include "proxy/session.hpp"

#include "protocol/error_response.hpp"
#include "proxy/worker.hpp"

#include <sys/socket.h>

namespace patroxy::proxy {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

namespace {
// A session whose startup was answered this recently is left its first
// transaction: a client that connects to run one (pgbench -C, a web request)
// must not meet the drain between its login and its query.
constexpr milliseconds fresh_session_grace{1000};
// A soft drain's "deadline": never, in practice (finite for the deadline queue's arithmetic).
constexpr std::chrono::hours no_deadline{24 * 365};
}  // namespace

void session::drain(std::string why, clock::time_point not_before, clock::time_point deadline,
                    bool refuse_unrouted) {
    if (phase_ == phase::closed) {
        return;
    }
    // A second hard drain keeps the stricter of the two; a soft drain (its
    // member left the class) gives way to the hard one entirely.
    const bool again = draining_ && !soft_drain_;
    draining_ = true;
    drain_refuses_unrouted_ = again ? drain_refuses_unrouted_ || refuse_unrouted : refuse_unrouted;
    soft_drain_ = false;  // a reload's or a shutdown's drain is not undone
    drain_why_ = std::move(why);
    drain_not_before_ = again ? std::min(drain_not_before_, not_before) : not_before;
    drain_deadline_ = again ? std::min(drain_deadline_, deadline) : deadline;
    switch (phase_) {
    case phase::holding:
        if (!drain_refuses_unrouted_) {
            // Waits on for a member (within wait_for_backend), at most until the deadline.
            arm_drain(drain_deadline_);
            return;
        }
        // No member yet, nothing begun: told now.
        leave_hold();
        return refuse(close_reason::shutdown, protocol::sqlstate::cannot_connect_now, "patroxy: " + drain_why_);
    case phase::relaying:
        close_if_idle();  // now, or it arms the next look itself
        return;
    default:
        // Its first packet, its connect, a refusal or a cancel in progress:
        // route() refuses a first packet (not in an upgrade's drain), a
        // connect goes on into relaying.
        arm_drain(drain_deadline_);
        return;
    }
}

void session::arm_drain(clock::time_point at) {
    if (drain_timer_) {
        owner_.deadlines().remove(*drain_timer_);
    }
    drain_timer_ = owner_.deadlines().add(at, [self = shared_from_this()] {
        self->drain_timer_.reset();
        if (self->phase_ == phase::closed) {
            return;
        }
        if (self->phase_ != phase::relaying) {
            if (clock::now() >= self->drain_deadline_) {
                return self->close(close_reason::shutdown, "drain deadline passed: " + self->drain_why_);
            }
            return self->arm_drain(self->drain_deadline_);
        }
        self->close_if_idle();
    });
}

// Its member left the listener's class for a reason that leaves it safe:
// closed at an idle point, spread over half of timeouts.drain so that a
// class change does not close a member's sessions all at once, never cut
// (a replica lags because of long queries, often); undone if it comes back.
void session::soft_drain(std::string why) {
    const auto now = clock::now();
    const auto spread = timeouts().drain / 2;
    const auto offset = spread.count() > 0
                            ? milliseconds{static_cast<milliseconds::rep>(reinterpret_cast<std::uintptr_t>(this) / 64) %
                                           spread.count()}
                            : milliseconds{0};
    drain(std::move(why), now + offset, now + no_deadline);
    soft_drain_ = draining_ && phase_ != phase::closed;
}

void session::undrain() {
    if (!soft_drain_ || phase_ == phase::closed) {
        return;
    }
    soft_drain_ = false;
    draining_ = false;
    drain_why_.clear();
    if (drain_timer_) {
        owner_.deadlines().remove(*drain_timer_);
        drain_timer_.reset();
    }
}

bool session::close_if_idle() {
    if (!draining_ || phase_ != phase::relaying) {
        return false;
    }
    const auto now = clock::now();
    const bool idle = tracking_ && transaction_.idle() && out_[from_client].left == 0 && out_[from_server].left == 0;
    if (now >= drain_deadline_) {
        close_drained(idle);
        return true;
    }
    const auto earliest = std::max(drain_not_before_, ready_at_ + fresh_session_grace);
    if (idle && now >= earliest) {
        close_drained(true);
        return true;
    }
    // Idle but not its turn yet: look again then. Busy: again once its next
    // answer is out (on_written), and at the deadline whatever happens.
    arm_drain(idle ? std::min(earliest, drain_deadline_) : drain_deadline_);
    return false;
}

void session::close_drained(bool idle) {
    if (!idle) {
        return close(close_reason::shutdown, "drain deadline passed mid-transaction: " + drain_why_);
    }
    // At a message boundary both ways: an unsolicited FATAL is what PostgreSQL
    // itself sends when it terminates an idle backend; then Terminate upstream.
    std::vector<std::uint8_t> fatal;
    protocol::encode_error_response(fatal, protocol::severity::fatal, protocol::sqlstate::admin_shutdown,
                                    "terminating connection: patroxy: " + drain_why_);
    ::send(client_.get(), fatal.data(), fatal.size(), MSG_NOSIGNAL);
    ::shutdown(client_.get(), SHUT_WR);
    static constexpr std::uint8_t terminate[] = {'X', 0, 0, 0, 4};
    ::send(server_.get(), terminate, sizeof terminate, MSG_NOSIGNAL);
    close(close_reason::drained, drain_why_);
}

}  // namespace patroxy::proxy
