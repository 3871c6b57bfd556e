// A session's relay: bytes both ways, the startup answer read on the way, half-closes and idle limits.
#include "proxy/session.hpp"

#include "base/log.hpp"
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
    // Framed from the first byte after the startup (a retry starts over).
    transaction_ = {};
    tracking_ = kind == first_kind::startup;
    if (tracking_ && packet_->startup.replication) {
        transaction_.never_idle();
    }
    if (tracking_ && first_.size() > first_length_) {
        transaction_.from_client(first_.data() + first_length_, first_.size() - first_length_);
    }
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
    if (fenced_) {
        unread_[s] = true;  // a turn deferred before the fence: read when it resumes
        return;
    }
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
        if (s == from_client && awaiting_encryption_answer_) {
            // CVE-2021-3935: bytes after SSLRequest/GSSENCRequest, before the
            // member's answer, could be injected and later read as if encrypted.
            return close(close_reason::protocol_error,
                         "data after SSLRequest/GSSENCRequest before the member's answer");
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
    if (s == from_client && after_decline_ && !relay_after_decline(data, n)) {
        return false;
    }
    if (tracking_) {
        if (s == from_client) {
            transaction_.from_client(data, n);
        } else {
            transaction_.from_server(data, n);
            if (ready_at_ == clock::time_point{} && transaction_.ready_count() > 0) {
                ready_at_ = clock::now();
            }
        }
    }
    if (s == from_server && scanning_ && !scan_startup_answer(data, n)) {
        // CVE-2021-23222: bytes behind the one-byte answer, before the TLS
        // handshake, would reach the client as if the server had sent them encrypted.
        close(close_reason::protocol_error, "member sent bytes right behind its answer to SSLRequest/GSSENCRequest");
        return false;
    }
    out_[s] = {data, n, n};
    flush(s);
    return out_[s].left == 0 && phase_ == phase::relaying;
}

// The client's first packet after the member's 'N': a StartupMessage, or
// another SSLRequest/GSSENCRequest on the same connection (libpq with
// gssencmode=prefer asks for SSL next). A request gets the same guards as a
// first one: nothing may follow it before the answer (CVE-2021-3935), nothing
// may follow an 'S'/'G' answer (CVE-2021-23222), and no message tracking
// (what follows may be TLS). False when the session closed.
bool session::relay_after_decline(const std::uint8_t* data, std::size_t n) {
    const auto take = std::min<std::size_t>(after_decline_head_.size() - after_decline_have_, n);
    std::memcpy(after_decline_head_.data() + after_decline_have_, data, take);
    after_decline_have_ += take;
    if (after_decline_have_ < after_decline_head_.size()) {
        return true;  // not enough to tell yet: relayed, tracked as a startup
    }
    after_decline_ = false;
    const protocol::bytes head(after_decline_head_);
    const auto code = protocol::read_u32(head, 4);
    if (protocol::read_u32(head, 0) != 8 ||
        (code != protocol::ssl_request_code && code != protocol::gssenc_request_code)) {
        return true;  // a StartupMessage (or what the member makes of it)
    }
    if (n > take) {
        close(close_reason::protocol_error, "data after SSLRequest/GSSENCRequest before the member's answer");
        return false;
    }
    awaiting_encryption_answer_ = true;
    scanning_ = true;
    tracking_ = false;
    transaction_ = {};
    return true;
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
    if (s == from_server && draining_) {
        close_if_idle();  // an answer is out: maybe the idle point a drain waits for
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
bool session::scan_startup_answer(const std::uint8_t* data, std::size_t n) {
    if (awaiting_encryption_answer_ && n > 0) {
        awaiting_encryption_answer_ = false;
        const auto answer = data[0];
        if (answer == 'S' || answer == 'G') {
            scanning_ = false;  // encrypted from here on, nothing to read
            encrypted_ = true;
            return n == 1;      // the handshake starts with the client: nothing may follow
        }
        if (answer != 'N') {
            scanning_ = false;  // not an answer PostgreSQL gives: relayed, not read
            return true;
        }
        if (n > 1) {
            return false;       // the server waits for the plaintext startup after 'N'
        }
        // Plaintext from here: the client's StartupMessage (untyped), then
        // messages; or, from libpq refused GSS encryption, an SSLRequest
        // (relay_after_decline looks at that packet first).
        tracking_ = true;
        transaction_.expect_startup_from_client();
        after_decline_ = true;
        after_decline_have_ = 0;
        return true;
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
            owner_.cancels().add(*key_, *member_, endpoint_);
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
    return true;
}

// The member went away before saying a word (a PostgreSQL that is shutting
// down accepts, then resets): the client has seen nothing, so the first packet
// can go to another attempt, as after a failed connect.
bool session::unanswered(side s) const {
    // A direct TLS ClientHello that a member closes on without a word is one
    // it does not accept (PostgreSQL before 17): another try gets the same.
    if (packet_->kind == protocol::first_kind::tls_client_hello) {
        return false;
    }
    return s == from_server && bytes_[from_server] == 0 && out_[from_server].left == 0 && !first_.empty() &&
           bytes_[from_client] == first_.size() && out_[from_client].left == 0;
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
    auto& lc = counters();
    auto& mc = member_counters_of();
    if (s == from_client) {
        bump(lc.bytes_in, n);
        bump(mc.bytes_in, n);
    } else {
        bump(lc.bytes_out, n);
        bump(mc.bytes_out, n);
    }
}

void session::uncount_member() {
    drop(member_counters_of().current);
    member_book_->active.fetch_sub(1, std::memory_order_relaxed);
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
void session::fence() {
    if (!fenced_) {
        fenced_ = true;
        PATROXY_LOG(info, "session") << "client=" << client_text_ << " member=" << member_name_
                                     << " paused: the member lost its lock while it hangs and may take it back";
    }
}

void session::unfence() {
    fenced_ = false;
    PATROXY_LOG(info, "session") << "client=" << client_text_ << " member=" << member_name_
                                 << " resumed: it took its lock back";
    // What was read before the pause goes out first, then what came meanwhile.
    for (const auto s : {from_server, from_client}) {
        if (phase_ == phase::relaying && out_[s].left > 0) {
            flush(s);
        }
    }
    // Every side is read: an edge that came while a write was pending is not
    // reported again (an empty socket answers EAGAIN).
    for (const auto s : {from_server, from_client}) {
        unread_[s] = false;
        if (phase_ == phase::relaying && out_[s].left == 0) {
            pump(s);
        }
    }
}

void session::arm_idle_check() {
    const auto& t = timeouts();
    const auto now = clock::now();
    // Until the member's first byte, it has server_startup to answer at all
    // (a member that accepts and never speaks would hold the client for hours).
    const bool answered = bytes_[from_server] > 0 || out_[from_server].left > 0;
    const auto server_limit = answered ? t.server_idle : t.server_startup;
    const auto client_left = t.client_idle - std::chrono::duration_cast<milliseconds>(now - last_read_[from_client]);
    const auto server_left = server_limit - std::chrono::duration_cast<milliseconds>(now - last_read_[from_server]);
    if (client_left <= milliseconds{0}) {
        return close(close_reason::client_timeout, "idle past timeouts.client_idle");
    }
    if (server_left <= milliseconds{0}) {
        if (!answered) {
            const auto why = "no answer within timeouts.server_startup (" + std::to_string(t.server_startup.count()) + "ms)";
            if (unanswered(from_server)) {
                return retry_unanswered(why);  // the client has seen nothing yet
            }
            return close(close_reason::server_timeout, why);
        }
        return close(close_reason::server_timeout, "idle past timeouts.server_idle");
    }
    arm(std::min(client_left, server_left), close_reason::client_timeout);
}

}  // namespace patroxy::proxy
