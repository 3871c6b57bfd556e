#include "proxy/session.hpp"

#include "app/log.hpp"
#include "protocol/error_response.hpp"
#include "proxy/balancer.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/write.hpp>

#include <cstring>
#include <utility>

#include <sys/socket.h>

namespace patroxy::proxy {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

// After `retries` failed connects, pause this long before routing again.
constexpr milliseconds connect_retry_pause{200};

namespace {
void set_stream_options(tcp::socket& s) {
    error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    s.set_option(net::socket_base::keep_alive(true), ignored);
}

// The failure of the system call just made, as asio reports its own.
error_code last_error() { return {errno, boost::system::system_category()}; }

std::string seconds_text(milliseconds d) {
    const auto ms = d.count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}
}  // namespace

session::session(worker& owner, std::size_t listener, tcp::socket client, const tcp::endpoint& peer)
    : owner_(owner),
      listener_(listener),
      client_(std::move(client)),
      server_(owner.ioc()),
      started_(clock::now()),
      client_text_(peer.address().to_string() + ":" + std::to_string(peer.port())) {
    error_code ignored;
    client_.non_blocking(true, ignored);  // see connect_to()
}

session::~session() { owner_.remove(this); }

const conf::listener_config& session::listener() const { return owner_.config().listeners[listener_]; }

void session::start(bool over_limit) {
    owner_.add(this);
    counted_ = true;  // the worker counted us in listener_slots before deciding over_limit
    auto& c = owner_.counters().listener(listener_);
    bump(c.accepted);
    bump(c.current);
    if (over_limit) {
        refuse_on_first_ = close_reason::maxconn;
    }
    first_.reserve(128);  // TCP_NODELAY and SO_KEEPALIVE come from the listener
    arm(owner_.config().timeouts.startup, close_reason::startup_timeout);
    do_read_first();
}

// ---- first packet -----------------------------------------------------------

void session::do_read_first() {
    // Grow in small steps; decode_first_packet refuses lengths over 10000
    // before we ever hold that much.
    const auto have = first_.size();
    first_.resize(have + 512);
    client_.async_read_some(net::buffer(first_.data() + have, 512),
                            [self = shared_from_this(), have](error_code ec, std::size_t n) {
                                self->first_.resize(have + n);
                                self->on_read_first(ec, n);
                            });
}

void session::on_read_first(error_code ec, std::size_t) {
    if (phase_ == phase::closed) {
        return;
    }
    if (ec) {
        return close(close_reason::client_abort, ec == net::error::eof ? "closed before its first packet" : ec.message());
    }
    const auto d = protocol::decode_first_packet(first_);
    switch (d.st) {
    case protocol::status::need_more:
        return do_read_first();
    case protocol::status::bad:
        return close(close_reason::protocol_error, d.why);
    case protocol::status::complete:
        return on_first_packet(d.value, d.consumed);
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

// ---- routing ------------------------------------------------------------------

void session::route() {
    if (!owner_.accepting()) {
        return refuse(close_reason::shutdown, protocol::sqlstate::cannot_connect_now, "patroxy: shutting down");
    }
    const auto& cfg = owner_.config();
    if (!routing_started_) {
        routing_started_ = true;
        route_deadline_ = clock::now() + cfg.timeouts.wait_for_backend;
    }
    const auto turn = listener().role == conf::listener_role::read
                          ? owner_.slots(listener_).cursor.fetch_add(1, std::memory_order_relaxed)
                          : 0;
    const auto members = candidates(owner_.topology(), listener(), cfg.health.read_fallback_to_leader, turn);
    if (!members.empty()) {
        leave_hold();
        return connect_to(members.front());
    }
    hold(cfg.timeouts.wait_for_backend);
}

// Keep the client (its first packet stays with us) until a member appears, a
// retry is due, or wait_for_backend has passed since routing began.
void session::hold(milliseconds retry_after) {
    const auto left = std::chrono::duration_cast<milliseconds>(route_deadline_ - clock::now());
    if (phase_ != phase::holding) {
        phase_ = phase::holding;
        bump(owner_.counters().listener(listener_).held);
    }
    arm(std::max(milliseconds{0}, std::min(left, retry_after)), close_reason::no_backend);
}

void session::leave_hold() {
    if (phase_ == phase::holding) {
        drop(owner_.counters().listener(listener_).held);
        phase_ = phase::first_packet;
    }
}

void session::on_topology() {
    switch (phase_) {
    case phase::holding:
        return route();
    case phase::connecting:
        // Nothing was said to the client yet: route it afresh. The pending
        // connect's handler finds the phase or attempt moved on and stops.
        if (member_ && !keeps_session(owner_.topology(), listener().role, *member_)) {
            error_code ignored;
            server_.close(ignored);
            route();
        }
        return;
    case phase::relaying:
        if (member_ && !keeps_session(owner_.topology(), listener().role, *member_)) {
            if (unanswered(from_server)) {
                // The client has seen nothing yet: it waits for the next member
                // rather than seeing its connection closed.
                return retry_unanswered("member lost its role before answering");
            }
            close(close_reason::backend_down, "member lost its role");
        }
        return;
    default:
        return;
    }
}

void session::refuse_if_waiting() {
    if (phase_ == phase::holding) {
        leave_hold();
        refuse(close_reason::shutdown, protocol::sqlstate::cannot_connect_now, "patroxy: shutting down");
    }
}

void session::connect_to(std::size_t member) {
    phase_ = phase::connecting;
    member_ = member;
    ++attempts_;
    error_code ec;
    server_.close(ec);
    const auto& ep = owner_.member_endpoint(member);
    // Non-blocking from the start: asio then needs no ioctl of its own, and
    // the relay's direct reads need none either.
    server_.open(ep.protocol(), ec);
    if (!ec) {
        server_.non_blocking(true, ec);
    }
    if (ec) {
        return on_connect_failed(ec.message());  // out of descriptors
    }
    set_stream_options(server_);
    arm(owner_.config().timeouts.connect, close_reason::connect_failed);
    // Our own connect: asio's asks poll and getsockopt whether it finished,
    // where the first packet's send tells just as well (a refusal is its error).
    if (::connect(server_.native_handle(), ep.data(), static_cast<socklen_t>(ep.size())) == 0) {
        return forward_first(0);
    }
    if (errno != EINPROGRESS) {
        return on_connect_failed(last_error().message());
    }
    // On loopback the handshake has usually finished by the time connect
    // returns: sending at once saves the wait for writability (an epoll_ctl
    // and a trip through the event loop). Elsewhere it could not have.
    if (ep.address().is_loopback()) {
        const auto sent = ::send(server_.native_handle(), first_.data(), first_.size(), MSG_NOSIGNAL);
        if (sent == static_cast<ssize_t>(first_.size())) {
            return on_first_forwarded({}, first_.size());
        }
        if (sent >= 0) {
            return forward_first(static_cast<std::size_t>(sent));  // the rest when there is room
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return on_connect_failed(last_error().message());
        }
    }
    // A timed-out attempt's handler runs later with operation_aborted; the
    // attempt number tells it apart from the current one.
    server_.async_wait(tcp::socket::wait_write, [self = shared_from_this(), attempt = attempts_](error_code wait_ec) {
        if (attempt != self->attempts_ || self->phase_ != phase::connecting || wait_ec == net::error::operation_aborted) {
            return;
        }
        if (wait_ec) {
            return self->on_connect_failed(wait_ec.message());
        }
        self->forward_first(0);
    });
}

// Sends the first packet (and anything the client already sent after it)
// from byte `from` on.
void session::forward_first(std::size_t from) {
    net::async_write(server_, net::buffer(first_.data() + from, first_.size() - from),
                     [self = shared_from_this(), attempt = attempts_, from](error_code ec, std::size_t n) {
                         if (attempt == self->attempts_) {
                             self->on_first_forwarded(ec, from + n);
                         }
                     });
}

void session::on_connect_failed(std::string_view why) {
    bump(owner_.counters().member(listener_, *member_).connect_errors);
    owner_.trouble().report(*member_);
    const auto& member_name = owner_.config().members[*member_].name;
    PATROXY_LOG(warn, "session") << "listener=" << listener().name << " member=" << member_name
                                 << " client=" << client_text_ << " connect failed (attempt " << attempts_
                                 << "): " << why;
    last_connect_error_ = member_name + ": " + std::string(why);
    if (attempts_ <= owner_.config().timeouts.retries) {
        // HAProxy retries the same server for writes; reads move to the next replica.
        return route();
    }
    // A leader whose PostgreSQL is stopping refuses connections a moment before
    // Patroni reports the change: wait for the next topology, or retry shortly,
    // within the same wait_for_backend budget.
    attempts_ = 0;
    if (clock::now() + connect_retry_pause < route_deadline_) {
        return hold(connect_retry_pause);
    }
    refuse_connect_failed();
}

void session::refuse_connect_failed() {
    refuse(close_reason::connect_failed, protocol::sqlstate::cannot_connect_now,
           "patroxy: could not connect to a member for listener '" + listener().name + "' (" + last_connect_error_ + ")");
}

void session::on_first_forwarded(error_code ec, std::size_t n) {
    if (phase_ != phase::connecting || ec == net::error::operation_aborted) {
        return;  // closed, timed out, or routed afresh
    }
    if (ec) {
        return on_connect_failed(ec.message());  // the connect failed, or the member reset at once
    }
    auto& mc = owner_.counters().member(listener_, *member_);
    bump(mc.current);
    bump(mc.total);
    auto& slot = owner_.slots(listener_).members[*member_];
    count_in(slot.active, slot.peak);
    member_counted_ = true;
    disarm();
    count_bytes(from_client, n);
    start_relay();
}

// ---- relaying ---------------------------------------------------------------------

void session::start_relay() {
    phase_ = phase::relaying;
    using protocol::first_kind;
    const auto kind = packet_->kind;
    scanning_ = kind == first_kind::startup || kind == first_kind::ssl_request || kind == first_kind::gssenc_request;
    awaiting_encryption_answer_ = kind == first_kind::ssl_request || kind == first_kind::gssenc_request;
    last_read_[from_client] = last_read_[from_server] = clock::now();
    arm_idle_check();
    read_more(from_server);
    if (held_from_client_ > 0) {
        return on_read(from_client, {}, std::exchange(held_from_client_, 0));
    }
    if (!client_reading_) {
        read_more(from_client);
    }  // else a cancelled read's handler is still due: it reads again
}

void session::read_more(side s) {
    client_reading_ = client_reading_ || s == from_client;
    from(s).async_read_some(net::buffer(small_[s]), [self = shared_from_this(), s](error_code ec, std::size_t n) {
        self->on_read(s, ec, n);
    });
}

void session::on_read(side s, error_code ec, std::size_t n) {
    if (s == from_client) {
        client_reading_ = false;
    }
    if (ec == net::error::operation_aborted) {
        // Cancelled by a retry; the relay with the next member may be on already.
        if (s == from_client && phase_ == phase::relaying && !writing_[s]) {
            read_more(s);
        }
        return;
    }
    if (phase_ != phase::relaying) {
        // Completed just before a retry cancelled it: the bytes stay in small_
        // and follow the first packet to the next member (start_relay).
        if (!ec && s == from_client && (phase_ == phase::connecting || phase_ == phase::holding)) {
            held_from_client_ = n;
        }
        return;
    }
    if (ec && unanswered(s)) {
        return retry_unanswered(ec == net::error::eof ? "closed before answering" : ec.message());
    }
    if (ec == net::error::eof) {
        return end_of_stream(s);
    }
    if (ec) {
        return close(abort_reason(s), ec.message());
    }
    last_read_[s] = clock::now();
    const std::uint8_t* data = small_[s].data();
    if (n == small_read) {
        // Probably more behind it: take the rest into a pool buffer, one write for all.
        auto lease = owner_.buffers().take();
        std::memcpy(lease.data(), data, n);
        const auto more = ::recv(from(s).native_handle(), lease.data() + n, lease.size() - n, 0);
        if (more > 0) {
            n += static_cast<std::size_t>(more);
        } else if (more < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return close(abort_reason(s), last_error().message());
        }  // 0: the peer finished too; the next read reports it after these bytes are out
        in_flight_[s] = std::move(lease);
        data = in_flight_[s].data();
    }
    if (s == from_server && unanswered(s) && packet_->kind == protocol::first_kind::startup) {
        // A PostgreSQL that is shutting down or starting up answers FATAL 57P03
        // before Patroni reports the change. The client has seen nothing yet,
        // so it can wait for another member like after a refused connect.
        const auto d = protocol::decode_server_message({data, n});
        if (d.st == protocol::status::complete && d.value.kind == protocol::server_kind::error_response &&
            d.value.sqlstate == protocol::sqlstate::cannot_connect_now) {
            in_flight_[s].release();
            return retry_unanswered("answered 57P03: " + d.value.message);
        }
    }
    if (s == from_server && scanning_) {
        scan_startup_answer(data, n);
    }
    // Send now rather than through async_write: its completion would be one
    // more trip through the event loop (and one more epoll_wait) per packet.
    const auto sent = ::send(to(s).native_handle(), data, n, MSG_NOSIGNAL);
    if (sent == static_cast<ssize_t>(n)) {
        return on_written(s, {}, n);
    }
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return on_written(s, last_error(), 0);
    }
    // The other side reads slower than this one writes: wait, reading nothing more meanwhile.
    const auto done = sent > 0 ? static_cast<std::size_t>(sent) : 0;
    writing_[s] = true;
    net::async_write(to(s), net::buffer(data + done, n - done),
                     [self = shared_from_this(), s, done](error_code wec, std::size_t written) {
                         self->on_written(s, wec, done + written);
                     });
}

void session::on_written(side s, error_code ec, std::size_t n) {
    writing_[s] = false;
    in_flight_[s].release();
    if (phase_ != phase::relaying) {
        return;
    }
    if (ec) {
        // The write went to the other side: its failure is the other side's abort.
        return close(abort_reason(s == from_client ? from_server : from_client), ec.message());
    }
    count_bytes(s, n);
    if (s == from_server && !first_.empty()) {
        first_.clear();
        first_.shrink_to_fit();  // answered: idle sessions keep no startup bytes
    }
    read_more(s);
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
           !writing_[from_client];
}

void session::retry_unanswered(std::string_view why) {
    error_code ignored;
    client_.cancel(ignored);
    server_.close(ignored);
    if (member_counted_) {
        uncount_member();
    }
    bytes_ = {0, 0};
    eof_ = {false, false};
    phase_ = phase::connecting;  // pending relay handlers see they are stale
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
    error_code ignored;
    to(s).shutdown(tcp::socket::shutdown_send, ignored);
    if (eof_[from_client] && eof_[from_server]) {
        close(close_reason::done);
    } else if (s == from_server) {
        // PostgreSQL closes after Terminate or a FATAL error; nothing more can come.
        close(close_reason::done);
    }
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

// ---- refusing -----------------------------------------------------------------------

void session::refuse(close_reason why, std::string_view sqlstate, std::string message) {
    phase_ = phase::refusing;
    refusal_ = why;
    refusal_text_ = message;
    refusal_bytes_.clear();
    protocol::encode_error_response(refusal_bytes_, protocol::severity::fatal, sqlstate, message);
    const auto kind = packet_ ? packet_->kind : protocol::first_kind::startup;
    if (kind == protocol::first_kind::cancel_request || kind == protocol::first_kind::tls_client_hello) {
        return close(why, message);  // nobody to show a message to in plaintext
    }
    if (kind == protocol::first_kind::ssl_request || kind == protocol::first_kind::gssenc_request) {
        // Decline encryption, read the plaintext StartupMessage, then answer it
        // with the error: libpq shows that message (or falls back, per sslmode).
        arm(owner_.config().timeouts.startup, why);
        return decline_encryption();
    }
    send_refusal();
}

// Answers 'N' to an SSL/GSS request and reads the client's next packet.
void session::decline_encryption() {
    first_.clear();
    ++declines_;
    net::async_write(client_, net::buffer(&protocol::decline_encryption, 1),
                     [self = shared_from_this()](error_code ec, std::size_t) {
                         if (ec) {
                             return self->close(self->refusal_, "client left during refusal");
                         }
                         self->do_read_first();
                     });
}

void session::send_refusal() {
    arm(owner_.config().timeouts.startup, refusal_);
    net::async_write(client_, net::buffer(refusal_bytes_), [self = shared_from_this()](error_code, std::size_t) {
        error_code ignored;
        self->client_.shutdown(tcp::socket::shutdown_send, ignored);
        self->close(self->refusal_, self->refusal_text_);
    });
}

// ---- cancel -------------------------------------------------------------------------

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
    error_code ignored;
    server_.close(ignored);
    if (cancel_next_ >= cancel_targets_.size()) {
        return close(close_reason::cancel_forwarded, std::to_string(cancel_targets_.size()) + " member(s)");
    }
    member_ = cancel_targets_[cancel_next_++];
    arm(owner_.config().timeouts.connect, close_reason::connect_failed);
    server_.async_connect(owner_.member_endpoint(*member_), [self = shared_from_this(), n = cancel_next_](error_code ec) {
        if (n == self->cancel_next_) {
            self->on_cancel_connected(ec);
        }
    });
}

void session::on_cancel_connected(error_code ec) {
    if (phase_ != phase::cancelling) {
        return;
    }
    if (ec) {
        return next_cancel_target();
    }
    net::async_write(server_, net::buffer(first_), [self = shared_from_this(), n = cancel_next_](error_code, std::size_t) {
        if (self->phase_ == phase::cancelling && n == self->cancel_next_) {
            self->next_cancel_target();
        }
    });
}

// ---- deadlines and closing ------------------------------------------------------------

void session::arm(milliseconds after, close_reason why) {
    auto self = shared_from_this();
    disarm();
    deadline_why_ = why;
    deadline_ = owner_.deadlines().add(clock::now() + after, std::move(self));
}

void session::disarm() {
    if (deadline_) {
        owner_.deadlines().remove(*deadline_);
        deadline_.reset();
    }
}

void session::on_deadline() {
    deadline_.reset();  // the queue has let go of it
    switch (phase_) {
    case phase::closed:
        return;
    case phase::relaying:
        return arm_idle_check();
    case phase::holding:
        if (clock::now() < route_deadline_) {
            return route();  // a retry after failed connects
        }
        leave_hold();
        if (!last_connect_error_.empty()) {
            return refuse_connect_failed();
        }
        return refuse(close_reason::no_backend, protocol::sqlstate::cannot_connect_now,
                      "patroxy: no " +
                          std::string(listener().role == conf::listener_role::write ? "leader" : "healthy replica") +
                          " available for listener '" + listener().name + "' after waiting " +
                          seconds_text(owner_.config().timeouts.wait_for_backend));
    case phase::connecting:
        return on_connect_failed("timed out after " + seconds_text(owner_.config().timeouts.connect));
    case phase::cancelling:
        return next_cancel_target();
    default:
        return close(deadline_why_, "timed out");
    }
}

session_view session::view(clock::time_point now) const {
    session_view v;
    v.listener = listener_;
    v.member = member_;
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
        v.user = packet_->startup.user;
        v.database = packet_->startup.database;
        v.application_name = packet_->startup.application_name;
    }
    v.encrypted = encrypted_;
    v.age_seconds = std::chrono::duration<double>(now - started_).count();
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
    error_code ignored;
    disarm();
    client_.close(ignored);
    server_.close(ignored);
    owner_.remove(this);
    if (key_) {
        owner_.cancels().remove(*key_);
    }
    auto& lc = owner_.counters().listener(listener_);
    drop(lc.current);
    bump(lc.closed[static_cast<std::size_t>(why)]);
    if (member_counted_) {
        uncount_member();
    }
    if (counted_) {
        owner_.slots(listener_).active.fetch_sub(1, std::memory_order_relaxed);
        counted_ = false;
    }
    const bool routine = why == close_reason::done || why == close_reason::cancel_forwarded;
    const auto lvl = routine ? log::level::info : log::level::warn;
    if (log::enabled(lvl)) {
        const auto& cfg = owner_.config();
        const auto ms = std::chrono::duration_cast<milliseconds>(clock::now() - started_).count();
        log::line line(lvl, "session");
        line << "listener=" << listener().name << " member=" << (member_ ? cfg.members[*member_].name : "-")
             << " client=" << client_text_;
        if (packet_ && packet_->kind == protocol::first_kind::startup) {
            line << " user=" << packet_->startup.user << " db=" << packet_->startup.database;
            if (!packet_->startup.application_name.empty()) {
                line << " app=" << packet_->startup.application_name;
            }
        } else if (packet_) {
            line << " first=" << protocol::to_string(packet_->kind);
        }
        line << " duration_ms=" << ms << " bytes_in=" << bytes_[from_client] << " bytes_out=" << bytes_[from_server]
             << " reason=" << to_string(why);
        if (!detail.empty()) {
            line << " detail=\"" << detail << '"';
        }
    }
}

}  // namespace patroxy::proxy
