// A session's relay: bytes both ways, the startup answer read on the way, half-closes and idle limits.
#include "proxy/session.hpp"

#include "app/log.hpp"
#include "protocol/error_response.hpp"
#include "proxy/worker.hpp"

#include <cstring>
#include <utility>

#include <sys/socket.h>

namespace patroxy::proxy {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

namespace {
// Full reads in a row before other sessions get their turn.
constexpr int reads_per_turn = 16;
}  // namespace

void session::start_relay() {
    phase_ = phase::relaying;
    using protocol::first_kind;
    const auto kind = packet_->kind;
    scanning_ = kind == first_kind::startup || kind == first_kind::ssl_request || kind == first_kind::gssenc_request;
    awaiting_encryption_answer_ = kind == first_kind::ssl_request || kind == first_kind::gssenc_request;
    last_read_[from_client] = last_read_[from_server] = clock::now();
    arm_idle_check();
    // Only what was reported while we could not read: anything else comes
    // with its own event (no read that finds nothing).
    for (const auto s : {from_server, from_client}) {
        if ((std::exchange(unread_[s], false) || peer_finished_[s]) && phase_ == phase::relaying) {
            pump(s);
        }
    }
}

// Reads from side s and writes to the other side until s is drained, the
// other side cannot take more, or s has had its turn.
void session::pump(side s) {
    for (int turn = 0; turn < reads_per_turn; ++turn) {
        if (phase_ != phase::relaying || out_[s].left > 0 || eof_[s]) {
            return;  // a pending write resumes reading when it is done
        }
        const auto n = ::recv(from(s), small_[s].data(), small_read, 0);
        if (n < 0) {
            if (would_block(errno)) {
                return;
            }
            return on_read_failed(s, last_errno().message());
        }
        if (n == 0) {
            if (unanswered(s)) {
                return retry_unanswered("closed before answering");
            }
            return end_of_stream(s);
        }
        last_read_[s] = clock::now();
        const std::uint8_t* data = small_[s].data();
        auto got = static_cast<std::size_t>(n);
        bool maybe_more = got == small_read;
        if (maybe_more) {
            // Probably more behind it: take the rest into a pool buffer, one write for all.
            auto lease = owner_.buffers().take();
            std::memcpy(lease.data(), data, got);
            const auto more = ::recv(from(s), lease.data() + got, lease.size() - got, 0);
            if (more > 0) {
                got += static_cast<std::size_t>(more);
                maybe_more = got == lease.size();
            } else if (more < 0 && !would_block(errno)) {
                return close(abort_reason(s), last_errno().message());
            } else {
                maybe_more = more == 0;  // the peer finished too: the next read reports it after these bytes
            }
            in_flight_[s] = std::move(lease);
            data = in_flight_[s].data();
        }
        if (!relay(s, data, got)) {
            return;  // waiting for a write, or closed
        }
        if (!maybe_more && !peer_finished_[s]) {
            return;  // drained: the next bytes bring an event (a FIN already reported does not)
        }
    }
    // Still more: the other sessions first, then this one again.
    owner_.loop().defer([self = shared_from_this(), s] { self->pump(s); });
}

// Passes n bytes read from side s on; false when they could not all go now.
bool session::relay(side s, const std::uint8_t* data, std::size_t n) {
    if (s == from_server && unanswered(s) && packet_->kind == protocol::first_kind::startup) {
        // A PostgreSQL that is shutting down or starting up answers FATAL 57P03
        // before Patroni reports the change. The client has seen nothing yet,
        // so it can wait for another member like after a refused connect.
        const auto d = protocol::decode_server_message({data, n});
        if (d.st == protocol::status::complete && d.value.kind == protocol::server_kind::error_response &&
            d.value.sqlstate == protocol::sqlstate::cannot_connect_now) {
            retry_unanswered("answered 57P03: " + d.value.message);
            return false;
        }
    }
    if (s == from_server && scanning_) {
        scan_startup_answer(data, n);
    }
    out_[s] = {data, n, n};
    flush(s);
    return out_[s].left == 0 && phase_ == phase::relaying;
}

// Writes what side s's last read left for the other side.
void session::flush(side s) {
    auto& o = out_[s];
    const auto sent = ::send(to(s), o.data, o.left, MSG_NOSIGNAL);
    if (sent < 0) {
        if (would_block(errno)) {
            return;  // the other side reads slower than this one writes: its socket reports room
        }
        // The write went to the other side: its failure is the other side's abort.
        return close(abort_reason(s == from_client ? from_server : from_client), last_errno().message());
    }
    o.data += sent;
    o.left -= static_cast<std::size_t>(sent);
    if (o.left == 0) {
        on_written(s);
    }
}

void session::on_written(side s) {
    in_flight_[s].release();
    count_bytes(s, std::exchange(out_[s], pending{}).total);
    if (s == from_server && !first_.empty()) {
        first_.clear();
        first_.shrink_to_fit();  // answered: idle sessions keep no startup bytes
    }
}

void session::on_read_failed(side s, const std::string& why) {
    if (unanswered(s)) {
        return retry_unanswered(why);
    }
    close(abort_reason(s), why);
}

// Reads (never changes) the member's startup answer until ReadyForQuery to
// learn the session's cancel key. Bytes may split messages anywhere.
void session::scan_startup_answer(const std::uint8_t* data, std::size_t n) {
    if (awaiting_encryption_answer_ && n > 0) {
        awaiting_encryption_answer_ = false;
        if (data[0] != 'N') {
            scanning_ = false;  // 'S' or 'G': encrypted from here on, nothing to read
            encrypted_ = true;
            return;
        }
        ++data;
        --n;
    }
    startup_answer_.insert(startup_answer_.end(), data, data + n);
    std::size_t at = 0;
    while (scanning_) {
        const auto d = protocol::decode_server_message(protocol::bytes(startup_answer_).subspan(at));
        if (d.st == protocol::status::need_more) {
            break;
        }
        if (d.st == protocol::status::bad) {
            PATROXY_LOG(debug, "session") << "client=" << client_text_ << " unreadable startup answer: " << d.why;
            scanning_ = false;
            break;
        }
        at += d.consumed;
        if (d.value.kind == protocol::server_kind::backend_key_data && !key_) {
            key_ = d.value.key;
            owner_.cancels().add(*key_, *member_);
        } else if (d.value.kind == protocol::server_kind::ready_for_query ||
                   d.value.kind == protocol::server_kind::error_response) {
            scanning_ = false;
        }
    }
    if (scanning_) {
        startup_answer_.erase(startup_answer_.begin(), startup_answer_.begin() + static_cast<std::ptrdiff_t>(at));
    } else {
        startup_answer_.clear();
        startup_answer_.shrink_to_fit();
    }
}

// The member went away before saying a word (a PostgreSQL that is shutting
// down accepts, then resets): the client has seen nothing, so the first packet
// can go to another attempt, as after a failed connect.
bool session::unanswered(side s) const {
    return s == from_server && bytes_[from_server] == 0 && !first_.empty() && bytes_[from_client] == first_.size() &&
           out_[from_client].left == 0;
}

void session::retry_unanswered(std::string_view why) {
    server_.reset();
    if (member_counted_) {
        uncount_member();
    }
    bytes_ = {0, 0};
    eof_ = {false, false};
    out_ = {};
    in_flight_[from_server].release();
    phase_ = phase::connecting;
    on_connect_failed(why);
}

void session::count_bytes(side s, std::size_t n) {
    bytes_[s] += n;
    auto& lc = owner_.counters().listener(listener_);
    auto& mc = owner_.counters().member(listener_, *member_);
    if (s == from_client) {
        bump(lc.bytes_in, n);
        bump(mc.bytes_in, n);
    } else {
        bump(lc.bytes_out, n);
        bump(mc.bytes_out, n);
    }
}

void session::uncount_member() {
    drop(owner_.counters().member(listener_, *member_).current);
    owner_.slots(listener_).members[*member_].active.fetch_sub(1, std::memory_order_relaxed);
    member_counted_ = false;
}

// A reset once either side has finished sending is how many clients end a
// session (TLS close_notify racing the FIN): that is a normal end.
close_reason session::abort_reason(side s) const {
    if (eof_[from_client] || eof_[from_server]) {
        return close_reason::done;
    }
    return s == from_client ? close_reason::client_abort : close_reason::server_abort;
}

// One side finished sending: pass the half-close on, end when both have.
void session::end_of_stream(side s) {
    eof_[s] = true;
    if ((eof_[from_client] && eof_[from_server]) || s == from_server) {
        // PostgreSQL closes after Terminate or a FATAL error; nothing more can
        // come. Closing sends the FIN: no shutdown call of its own.
        return close(close_reason::done);
    }
    ::shutdown(to(s), SHUT_WR);
}

// One timer checks both idle limits; re-arming per read would cost a timer
// operation per packet.
void session::arm_idle_check() {
    const auto& t = owner_.config().timeouts;
    const auto now = clock::now();
    const auto client_left = t.client_idle - std::chrono::duration_cast<milliseconds>(now - last_read_[from_client]);
    const auto server_left = t.server_idle - std::chrono::duration_cast<milliseconds>(now - last_read_[from_server]);
    if (client_left <= milliseconds{0}) {
        return close(close_reason::client_timeout, "idle past timeouts.client_idle");
    }
    if (server_left <= milliseconds{0}) {
        return close(close_reason::server_timeout, "idle past timeouts.server_idle");
    }
    arm(std::min(client_left, server_left), close_reason::client_timeout);
}

}  // namespace patroxy::proxy
