#include "proxy/session.hpp"

#include "app/log.hpp"
#include "protocol/error_response.hpp"
#include "proxy/balancer.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>

namespace patroxy::proxy {

using boost::beast::bind_front_handler;
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
      deadline_(owner.ioc()),
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
    set_stream_options(client_);
    first_.reserve(128);
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
    error_code ignored;
    server_.close(ignored);
    // Non-blocking from the start: asio then needs no ioctl of its own, and
    // the relay's direct reads and writes need none either.
    server_.open(owner_.member_endpoint(member).protocol(), ignored);
    server_.non_blocking(true, ignored);
    arm(owner_.config().timeouts.connect, close_reason::connect_failed);
    // A timed-out attempt's handler runs later with operation_aborted; the
    // attempt number tells it apart from the current one.
    server_.async_connect(owner_.member_endpoint(member), [self = shared_from_this(), attempt = attempts_](error_code ec) {
        if (attempt == self->attempts_) {
            self->on_connect(ec);
        }
    });
}

void session::on_connect(error_code ec) {
    if (phase_ != phase::connecting) {
        return;  // closed, or the connect deadline already moved on
    }
    if (ec) {
        return on_connect_failed(ec.message());
    }
    set_stream_options(server_);
    auto& mc = owner_.counters().member(listener_, *member_);
    bump(mc.current);
    bump(mc.total);
    auto& slot = owner_.slots(listener_).members[*member_];
    count_in(slot.active, slot.peak);
    member_counted_ = true;
    deadline_.cancel();
    // Forward the first packet (and anything the client already sent after it).
    net::async_write(server_, net::buffer(first_), bind_front_handler(&session::on_first_forwarded, shared_from_this()));
}

void session::on_connect_failed(std::string_view why) {
    bump(owner_.counters().member(listener_, *member_).connect_errors);
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
    refuse(close_reason::connect_failed, protocol::sqlstate::cannot_connect_now,
           "patroxy: could not connect to a member for listener '" + listener().name + "' (" + last_connect_error_ + ")");
}

void session::on_first_forwarded(error_code ec, std::size_t n) {
    if (phase_ == phase::closed) {
        return;
    }
    if (ec) {
        return close(close_reason::server_abort, ec.message());
    }
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
    try_read(from_server);
    try_read(from_client);
}

// Reads whatever is there without waiting; waits for readability otherwise.
// A buffer is taken from the pool only for the bytes in flight.
void session::try_read(side s) {
    auto lease = owner_.buffers().take();
    error_code ec;
    const auto n = from(s).read_some(net::buffer(lease.data(), lease.size()), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
        lease.release();
        from(s).async_wait(tcp::socket::wait_read, [self = shared_from_this(), s](error_code wait_ec) {
            self->on_readable(s, wait_ec);
        });
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
    if (s == from_server && unanswered(s) && packet_->kind == protocol::first_kind::startup) {
        // A PostgreSQL that is shutting down or starting up answers FATAL 57P03
        // before Patroni reports the change. The client has seen nothing yet,
        // so it can wait for another member like after a refused connect.
        const auto d = protocol::decode_server_message({lease.data(), n});
        if (d.st == protocol::status::complete && d.value.kind == protocol::server_kind::error_response &&
            d.value.sqlstate == protocol::sqlstate::cannot_connect_now) {
            return retry_unanswered("answered 57P03: " + d.value.message);
        }
    }
    if (s == from_server && scanning_) {
        scan_startup_answer(lease.data(), n);
    }
    in_flight_[s] = std::move(lease);
    net::async_write(to(s), net::buffer(in_flight_[s].data(), n),
                     [self = shared_from_this(), s](error_code wec, std::size_t written) {
                         self->on_written(s, wec, written);
                     });
}

void session::on_readable(side s, error_code ec) {
    if (phase_ != phase::relaying || ec == net::error::operation_aborted) {
        return;
    }
    if (ec && unanswered(s)) {
        return retry_unanswered(ec.message());
    }
    if (ec) {
        return close(abort_reason(s), ec.message());
    }
    try_read(s);
}

void session::on_written(side s, error_code ec, std::size_t n) {
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
    try_read(s);
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
           !in_flight_[from_client];
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
    deadline_.expires_after(std::min(client_left, server_left));
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec && self->phase_ == phase::relaying) {
            self->arm_idle_check();
        }
    });
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
    deadline_.expires_after(after);
    deadline_.async_wait([self = shared_from_this(), why](error_code ec) {
        if (ec || self->phase_ == phase::closed) {
            return;  // re-armed or cancelled
        }
        switch (self->phase_) {
        case phase::holding:
            if (clock::now() < self->route_deadline_) {
                return self->route();  // a retry after failed connects
            }
            self->leave_hold();
            if (!self->last_connect_error_.empty()) {
                return self->refuse(close_reason::connect_failed, protocol::sqlstate::cannot_connect_now,
                                    "patroxy: could not connect to a member for listener '" + self->listener().name +
                                        "' (" + self->last_connect_error_ + ")");
            }
            return self->refuse(close_reason::no_backend, protocol::sqlstate::cannot_connect_now,
                                "patroxy: no " +
                                    std::string(self->listener().role == conf::listener_role::write
                                                    ? "leader"
                                                    : "healthy replica") +
                                    " available for listener '" + self->listener().name + "' after waiting " +
                                    seconds_text(self->owner_.config().timeouts.wait_for_backend));
        case phase::connecting:
            return self->on_connect_failed("timed out after " + seconds_text(self->owner_.config().timeouts.connect));
        case phase::cancelling:
            return self->next_cancel_target();
        default:
            return self->close(why, "timed out");
        }
    });
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
    deadline_.cancel();
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
