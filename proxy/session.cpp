#include "proxy/session.hpp"

#include "base/log.hpp"
#include "base/text.hpp"
#include "protocol/error_response.hpp"
#include "proxy/balancer.hpp"
#include "proxy/worker.hpp"

#include <algorithm>
#include <utility>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace patroxy::proxy {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

// After `retries` failed connects, pause this long before routing again.
constexpr milliseconds connect_retry_pause{200};

namespace {
// Events that mean "read now": bytes, the peer's FIN, a reset or an error.
constexpr std::uint32_t readable = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
// Every socket of a session: registered once, never changed.
constexpr std::uint32_t watched = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
// The first packet is read in steps of this size; decode_first_packet
// refuses lengths over 10000 before we ever hold that much.
constexpr std::size_t first_read = 512;

// A member's socket that stops acknowledging what we sent is dead after this
// long (TCP_USER_TIMEOUT, tcp(7)), not after TCP's ~15 minutes of
// retransmissions: the network to it is cut (bench/chaos.sh leader-cut-30s: the
// sessions hung, unanswered, while the lock stayed fresh). A busy or frozen
// PostgreSQL does not trip it: its kernel still acknowledges. Idle sessions are
// probed by keepalive within about the same time.
constexpr unsigned server_user_timeout_ms = 10000;
constexpr int server_keepalive_idle_s = 5;
constexpr int server_keepalive_interval_s = 2;
constexpr int server_keepalive_count = 3;

void set_stream_options(int fd) {
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &server_user_timeout_ms, sizeof server_user_timeout_ms);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &server_keepalive_idle_s, sizeof server_keepalive_idle_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &server_keepalive_interval_s, sizeof server_keepalive_interval_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &server_keepalive_count, sizeof server_keepalive_count);
}

std::string seconds_text(milliseconds d) {
    const auto ms = d.count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}
}  // namespace

session::session(worker& owner, const routing_ptr& born, std::size_t listener, unique_fd client,
                 const tcp::endpoint& peer)
    : owner_(owner),
      cfg_(born->config),
      listener_cfg_(born->listeners[listener].cfg),
      book_(born->listeners[listener].book),
      client_(std::move(client)),
      started_(clock::now()),
      client_text_(peer.address().to_string() + ":" + std::to_string(peer.port())) {
    for (int s = 0; s < 2; ++s) {
        ends_[s].self = this;
        ends_[s].which = s;
    }
}

session::~session() = default;

listener_counters& session::counters() const { return book_->of(owner_.index()); }

member_counters& session::member_counters_of() const { return member_book_->of(owner_.index()); }

void session::start(bool over_limit) {
    counted_ = true;  // the worker counted us in the listener's book and the ceiling before deciding over_limit
    auto& c = counters();
    bump(c.accepted);
    bump(c.current);
    if (over_limit) {
        refuse_on_first_ = close_reason::maxconn;
    }
    first_.reserve(128);  // TCP_NODELAY and SO_KEEPALIVE come from the listener
    arm(timeouts().startup, close_reason::startup_timeout);
    // Clients send the startup right behind the handshake, so it is usually
    // here by the time we accept: reading now saves a turn of the loop.
    if (watch(from_client)) {
        read_first();
    }
}

// Registers side s's socket; a failure (out of memory) ends the session.
bool session::watch(side s) {
    if (const auto ec = owner_.loop().watch(from(s), watched, &ends_[s])) {
        close(close_reason::client_abort, "cannot watch socket: " + ec.message());
        return false;
    }
    return true;
}

void session::on_ready(side s, std::uint32_t events) {
    // Nothing a peer sends may take the worker down: a failure here (out of
    // memory, a broken invariant caught as an exception) ends this session only.
    try {
        handle(s, events);
    } catch (const std::exception& e) {
        close(close_reason::protocol_error, std::string("internal error: ") + e.what());
    }
}

void session::handle(side s, std::uint32_t events) {
    // The session stays alive through this batch of events even if it closes
    // (the worker frees it afterwards), and stale events only cause a read or
    // write that finds nothing to do.
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        peer_finished_[s] = true;
    }
    switch (phase_) {
    case phase::first_packet:
        // A new socket also reports that it is writable: nothing to read then.
        if (s == from_client && (events & readable) != 0) {
            return read_first();
        }
        return;
    case phase::holding:
        if (left_while_waiting(s)) {
            return;
        }
        unread_[s] = unread_[s] || (events & readable) != 0;
        return;
    case phase::connecting:
        if (s == from_server) {
            return send_first();
        }
        if (left_while_waiting(s)) {
            return;
        }
        unread_[s] = unread_[s] || (events & readable) != 0;
        return;
    case phase::relaying: {
        if (fenced_) {
            unread_[s] = unread_[s] || (events & readable) != 0;
            return;  // pending writes and these bytes go on when it resumes
        }
        // Writes first: finishing one lets that direction read again.
        const side toward = s == from_client ? from_server : from_client;
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0 && out_[toward].left > 0) {
            flush(toward);
            if (out_[toward].left == 0 && phase_ == phase::relaying) {
                pump(toward);  // its reading stopped while the write waited
            }
        }
        if ((events & readable) != 0 && phase_ == phase::relaying) {
            pump(s);
        }
        return;
    }
    case phase::refusing:
        if (s != from_client) {
            return;
        }
        if (refusal_step_ == refusal_step::reading) {
            if ((events & readable) != 0) {
                read_first();
            }
            return;
        }
        if (to_client_.left > 0) {
            return flush_to_client();
        }
        return;
    case phase::cancelling:
        if (s == from_server) {
            return send_cancel();
        }
        return;
    case phase::closed:
        return;
    }
}

// ---- first packet -----------------------------------------------------------

void session::read_first() {
    for (;;) {
        const auto have = first_.size();
        first_.resize(have + first_read);
        const auto n = ::recv(client_.get(), first_.data() + have, first_read, 0);
        first_.resize(have + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
        if (n < 0) {
            if (would_block(errno)) {
                return;
            }
            return close(close_reason::client_abort, last_errno().message());
        }
        if (n == 0) {
            return close(close_reason::client_abort, "closed before its first packet");
        }
        const auto d = protocol::decode_first_packet(first_);
        switch (d.st) {
        case protocol::status::need_more:
            if (n < static_cast<ssize_t>(first_read)) {
                return;  // drained: the rest comes with the next event
            }
            continue;
        case protocol::status::bad:
            return close(close_reason::protocol_error, d.why);
        case protocol::status::complete:
            // A full read may have left more behind it, which no new event reports.
            unread_[from_client] = n == static_cast<ssize_t>(first_read);
            return on_first_packet(d.value, d.consumed);
        }
    }
}

void session::on_first_packet(protocol::first_packet packet, std::size_t consumed) {
    using protocol::first_kind;
    const bool asks_encryption = packet.kind == first_kind::ssl_request || packet.kind == first_kind::gssenc_request;
    // CVE-2021-3935: bytes after SSLRequest, before the answer, could be
    // injected by a man in the middle and later read as if encrypted.
    if (asks_encryption && first_.size() > consumed) {
        return close(close_reason::protocol_error, "data after SSLRequest/GSSENCRequest before the answer");
    }
    if (phase_ == phase::refusing) {
        // We declined encryption while refusing; now the client speaks plaintext.
        if (asks_encryption && declines_ < 3) {
            return decline_encryption();  // libpq may try GSSENC, then SSL
        }
        return send_refusal();
    }
    packet_ = std::move(packet);
    first_length_ = consumed;
    // Kept for the stats page and the log only (first_ goes to the member
    // untouched): a name PostgreSQL would cut at 63 bytes is cut here too, so
    // that ~10 KB parameters are not copied into every /status.json.
    for (auto* name : {&packet_->startup.user, &packet_->startup.database, &packet_->startup.application_name}) {
        if (name->size() > base::max_name_bytes) {
            *name = std::string(base::clip_utf8(*name));
        }
    }
    if (refuse_on_first_) {
        return refuse(close_reason::maxconn, protocol::sqlstate::too_many_connections,
                      "patroxy: too many connections on listener '" + listener().name + "' (maxconn " +
                          std::to_string(listener().maxconn) + ")");
    }
    if (packet_->kind == first_kind::cancel_request) {
        return forward_cancel();
    }
    route();
}

// Opens a non-blocking socket to `ep`, starts connecting and watches it.
std::optional<std::string> session::open_to(const tcp::endpoint& ep) {
    server_.reset();
    peer_finished_[from_server] = false;
    server_.reset(::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!server_) {
        return last_errno().message();  // out of descriptors
    }
    set_stream_options(server_.get());
    if (::connect(server_.get(), ep.data(), static_cast<socklen_t>(ep.size())) != 0 && errno != EINPROGRESS) {
        return last_errno().message();
    }
    // Watched once connect has begun: before that an idle socket reports a hang-up.
    if (const auto ec = owner_.loop().watch(server_.get(), watched, &ends_[from_server])) {
        return ec.message();
    }
    return std::nullopt;
}

// Connects to the member route() chose (member_, endpoint_, member_book_).
void session::connect_to() {
    phase_ = phase::connecting;
    ++attempts_;
    ++attempts_total_;
    first_sent_ = 0;
    unread_[from_server] = false;
    arm(timeouts().connect, close_reason::connect_failed);
    if (const auto failed = open_to(endpoint_)) {
        return on_connect_failed(*failed);
    }
    // On loopback the handshake has usually finished by the time connect
    // returns: sending at once saves a turn of the loop. Elsewhere the socket
    // reports writable when it is connected.
    if (endpoint_.address().is_loopback()) {
        send_first();
    }
}

// Sends what is left of first_ to the member. The send also tells whether
// the connect worked: a refusal is its error.
session::progress session::send_rest_of_first() {
    const auto sent = ::send(server_.get(), first_.data() + first_sent_, first_.size() - first_sent_, MSG_NOSIGNAL);
    if (sent < 0) {
        // Still connecting, or no room: the socket reports when.
        return would_block(errno) || errno == ENOTCONN ? progress::waiting : progress::failed;
    }
    first_sent_ += static_cast<std::size_t>(sent);
    return first_sent_ == first_.size() ? progress::done : progress::waiting;
}

// The first packet (and anything the client already sent after it).
void session::send_first() {
    switch (send_rest_of_first()) {
    case progress::done:
        return on_first_forwarded();
    case progress::failed:
        return on_connect_failed(last_errno().message());  // the connect failed, or the member reset at once
    case progress::waiting:
        return;
    }
}

void session::on_connect_failed(std::string_view why) {
    bump(member_counters_of().connect_errors);
    owner_.trouble().report(*member_);
    PATROXY_LOG(warn, "session") << "listener=" << listener().name << " member=" << member_name_
                                 << " client=" << client_text_ << " connect failed (attempt " << attempts_
                                 << "): " << why;
    last_connect_error_ = member_name_ + ": " + std::string(why);
    const auto& t = timeouts();
    const bool spent = attempts_total_ >= t.max_attempts;
    if (attempts_ <= t.retries && !spent) {
        // HAProxy retries the same server for writes; reads move to the next replica.
        return route();
    }
    // A leader whose PostgreSQL is stopping refuses connections a moment before
    // Patroni reports the change: wait for the next topology, or retry after a
    // pause that doubles each round, within the same wait_for_backend budget.
    // Once max_attempts are spent only a routing change brings another try.
    attempts_ = 0;
    const auto now = clock::now();
    if (spent && now < route_deadline_) {
        return hold(std::chrono::duration_cast<milliseconds>(route_deadline_ - now) + milliseconds{1});
    }
    const auto pause = connect_retry_pause * (1 << std::min(rounds_++, 3));
    if (now + pause < route_deadline_) {
        return hold(pause);
    }
    refuse_connect_failed();
}

void session::refuse_connect_failed() {
    refuse(close_reason::connect_failed, protocol::sqlstate::cannot_connect_now,
           "patroxy: could not connect to a member for listener '" + listener().name + "' (" + last_connect_error_ + ")");
}

void session::on_first_forwarded() {
    auto& mc = member_counters_of();
    bump(mc.current);
    bump(mc.total);
    count_in(member_book_->active, member_book_->peak);
    member_counted_ = true;
    disarm();
    count_bytes(from_client, first_.size());
    start_relay();
}

// ---- deadlines and closing ------------------------------------------------------------

void session::arm(milliseconds after, close_reason why) {
    disarm();
    deadline_why_ = why;
    deadline_ = owner_.deadlines().add(clock::now() + after, [self = shared_from_this()] {
        self->deadline_.reset();  // the queue has let go of it
        self->on_deadline();
    });
}

void session::disarm() {
    if (deadline_) {
        owner_.deadlines().remove(*deadline_);
        deadline_.reset();
    }
}

void session::on_deadline() {
    switch (phase_) {
    case phase::closed:
        return;
    case phase::relaying:
        return arm_idle_check();
    case phase::holding:
        if (clock::now() < route_deadline_ && attempts_total_ < timeouts().max_attempts) {
            return route();  // a retry after failed connects
        }
        if (guard_holds() && attempts_total_ < timeouts().max_attempts) {
            return hold(guard_recheck);  // its end is a routing change, which routes the session
        }
        leave_hold();
        if (!last_connect_error_.empty()) {
            return refuse_connect_failed();
        }
        if (member_full_) {
            return refuse(close_reason::no_backend, protocol::sqlstate::too_many_connections,
                          "patroxy: every member of listener '" + listener().name +
                              "' is at its maxconn after waiting " + seconds_text(timeouts().wait_for_backend));
        }
        return refuse(close_reason::no_backend, protocol::sqlstate::cannot_connect_now,
                      "patroxy: no " + class_text() + " available for listener '" + listener().name +
                          "' after waiting " + seconds_text(timeouts().wait_for_backend));
    case phase::connecting:
        return on_connect_failed("timed out after " + seconds_text(timeouts().connect));
    case phase::cancelling:
        return next_cancel_target();
    default:
        return close(deadline_why_, "timed out");
    }
}

session_view session::view(clock::time_point now) const {
    session_view v;
    v.listener = listener().name;
    v.member = member_name_;
    v.client = client_text_;
    switch (phase_) {
    case phase::first_packet: v.state = "startup"; break;
    case phase::holding: v.state = "waiting"; break;
    case phase::connecting: v.state = "connecting"; break;
    case phase::relaying: v.state = "active"; break;
    case phase::refusing: v.state = "refusing"; break;
    case phase::cancelling: v.state = "cancel"; break;
    case phase::closed: v.state = "closed"; break;
    }
    if (packet_ && packet_->kind == protocol::first_kind::startup) {
        // Whatever bytes the client sent: the stats JSON needs valid UTF-8.
        v.user = base::valid_utf8(packet_->startup.user);
        v.database = base::valid_utf8(packet_->startup.database);
        v.application_name = base::valid_utf8(packet_->startup.application_name);
    }
    v.encrypted = encrypted_;
    // `now` is when the list was asked for; a session accepted since is 0 s old.
    v.age_seconds = std::max(0.0, std::chrono::duration<double>(now - started_).count());
    v.bytes_in = bytes_[from_client];
    v.bytes_out = bytes_[from_server];
    return v;
}

void session::close(close_reason why, std::string_view detail) {
    if (phase_ == phase::closed) {
        return;
    }
    leave_hold();
    phase_ = phase::closed;
    disarm();
    if (drain_timer_) {
        owner_.deadlines().remove(*drain_timer_);
        drain_timer_.reset();
    }
    client_.reset();
    server_.reset();
    in_flight_ = {};
    out_ = {};
    owner_.remove(this);  // freed after this batch of events
    if (key_) {
        owner_.cancels().remove(*key_);
    }
    auto& lc = counters();
    drop(lc.current);
    bump(lc.closed[static_cast<std::size_t>(why)]);
    if (member_counted_) {
        uncount_member();
    }
    release_slot();
    if (counted_) {
        book_->active.fetch_sub(1, std::memory_order_relaxed);
        owner_.ceiling().active.fetch_sub(1, std::memory_order_relaxed);
        counted_ = false;
    }
    const bool routine = why == close_reason::done || why == close_reason::cancel_forwarded || why == close_reason::drained;
    const auto lvl = routine ? log::level::info : log::level::warn;
    if (log::enabled(lvl)) {
        const auto ms = std::chrono::duration_cast<milliseconds>(clock::now() - started_).count();
        log::line line(lvl, "session");
        line << "listener=" << listener().name << " member=" << (member_name_.empty() ? "-" : member_name_)
             << " client=" << client_text_;
        if (packet_ && packet_->kind == protocol::first_kind::startup) {
            // Client-chosen text: escaped and quoted, so it cannot forge fields or lines.
            line << " user=" << base::field(packet_->startup.user) << " db=" << base::field(packet_->startup.database);
            if (!packet_->startup.application_name.empty()) {
                line << " app=" << base::field(packet_->startup.application_name);
            }
        } else if (packet_) {
            line << " first=" << protocol::to_string(packet_->kind);
        }
        line << " duration_ms=" << ms << " bytes_in=" << bytes_[from_client] << " bytes_out=" << bytes_[from_server]
             << " reason=" << to_string(why);
        if (!detail.empty()) {
            line << " detail=" << base::field(detail);
        }
    }
}

}  // namespace patroxy::proxy
