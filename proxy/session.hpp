#pragma once
// One client connection and, once routed, its member connection. The session
// owns both sockets; it lives on the worker that accepted it (which owns it)
// and is only ever touched from that worker's thread. Both sockets are
// watched edge-triggered for reading and writing from the moment they exist:
// an event means "try again", and a read shorter than its buffer means the
// socket is drained until the next event.
//
// Life: read the first packet (startup timeout) -> pick a member, or hold for
// wait_for_backend -> connect (connect timeout, retries) -> forward the first
// packet -> relay bytes both ways until both sides close, an idle timeout, or
// the member loses its role. A refused client gets an ErrorResponse. A drain
// (reload, upgrade, shutdown) closes it where it is idle between
// transactions, with FATAL 57P01, or at the drain's deadline.
//
// A session keeps the configuration snapshot it was accepted under (its
// listener's settings, its timeouts) for its whole life; routing decisions
// read the worker's current routing.
//
// Files by concern: session.cpp (first packet, connecting, deadlines,
// closing), session_route.cpp (choosing a member, holding, routing changes),
// session_relay.cpp, session_drain.cpp, session_refusal.cpp, session_cancel.cpp.

#include "conf/config.hpp"
#include "protocol/first_packet.hpp"
#include "protocol/server_message.hpp"
#include "protocol/transaction.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/close_reason.hpp"
#include "proxy/event_loop.hpp"
#include "proxy/routing.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace patroxy::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

class worker;

/// What the stats page shows about one session (a copy, made on its worker).
struct session_view {
    std::string listener;
    std::string member;            ///< empty before one is chosen
    std::string client;
    std::string state;             ///< startup, waiting, connecting, active, refusing, cancel
    std::string user;              ///< empty when unknown (TLS hides the startup packet)
    std::string database;
    std::string application_name;
    bool encrypted = false;        ///< the member answered SSLRequest/GSSENCRequest with yes
    double age_seconds = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
};

/// Orders session views oldest first, as the stats list them.
inline bool runs_longer(const session_view& a, const session_view& b) { return a.age_seconds > b.age_seconds; }

class session : public std::enable_shared_from_this<session> {
public:
    /// `born`: the routing it was accepted under (its configuration and its
    /// listener's route, `listener` in it); `peer`: the client's address.
    session(worker& owner, const routing_ptr& born, std::size_t listener, unique_fd client, const tcp::endpoint& peer);
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    /// Begins reading the first packet. `over_limit`: the listener is past
    /// maxconn, so the client is answered 53300 once it has spoken.
    void start(bool over_limit);
    /// The worker has new routing: route a held session, or cut one whose
    /// member lost the role this listener routes by.
    void on_routing();
    /// Ends the session now (idempotent).
    void close(close_reason why, std::string_view detail = {});
    /// Closes the session where it is idle between transactions (FATAL
    /// 57P01 saying `why`), not before `not_before`, and at `deadline`
    /// whatever it is doing. One that has no member yet is refused now when
    /// `refuse_unrouted` (a shutdown), else routed as usual and drained once
    /// it has had its first transaction (an upgrade: this process still
    /// knows the members; a login cut short is an error the client sees).
    void drain(std::string why, std::chrono::steady_clock::time_point not_before,
               std::chrono::steady_clock::time_point deadline, bool refuse_unrouted = true);
    /// Its cluster in the current routing (nullptr once a reload removed it).
    const cluster_route* cluster_now() const;
    /// The listener's book this session counts in (a reload drains by it).
    const listener_book* listener_book_of() const { return book_; }
    /// The member this session is on, if any.
    std::optional<health::member_id> member() const { return member_; }
    const std::string& member_name() const { return member_name_; }
    /// The label of the cluster its listener routes to (as it was accepted).
    std::string cluster_label() const { return cfg_->cluster_label(cfg_->cluster_of(listener())); }
    /// The address its member connection went to.
    const tcp::endpoint& member_endpoint() const { return endpoint_; }
    /// A copy of what the stats page shows (worker thread).
    session_view view(std::chrono::steady_clock::time_point now) const;
    /// When it was accepted (the stats list the oldest first).
    std::chrono::steady_clock::time_point started_at() const { return started_; }

private:
    enum class phase { first_packet, holding, connecting, relaying, refusing, cancelling, closed };
    enum side : int { from_client = 0, from_server = 1 };

    /// One socket's events, as the worker's loop reports them.
    struct end final : event_loop::watcher {
        session* self = nullptr;
        int which = 0;  ///< the side whose socket this is
        void on_ready(std::uint32_t events) override { self->on_ready(static_cast<side>(which), events); }
    };
    /// Bytes on their way out: `left` of them from `data` on; `total` is what
    /// the whole write counts once it is done.
    struct pending {
        const std::uint8_t* data = nullptr;
        std::size_t left = 0;
        std::size_t total = 0;
    };

    void on_ready(side s, std::uint32_t events);
    void handle(side s, std::uint32_t events);
    bool watch(side s);
    // first packet
    void read_first();
    void on_first_packet(protocol::first_packet packet, std::size_t consumed);
    // routing and connecting
    void route();
    void hold(std::chrono::milliseconds retry_after);
    bool guard_holds() const;
    /// While a handback guard holds writes, a held session looks again this often.
    static constexpr std::chrono::milliseconds guard_recheck{500};
    void leave_hold();
    std::optional<std::string> open_to(const tcp::endpoint& ep);  ///< an error, or the socket connecting
    void connect_to();
    enum class progress { done, waiting, failed };
    progress send_rest_of_first();
    void send_first();
    void on_connect_failed(std::string_view why);
    void refuse_connect_failed();  ///< 57P03 naming the last connect error
    void on_first_forwarded();
    // relaying
    void start_relay();
    void pump(side s);
    bool relay(side s, const std::uint8_t* data, std::size_t n);
    void flush(side s);
    void on_written(side s);
    void on_read_failed(side s, const std::string& why);
    void end_of_stream(side s);
    close_reason abort_reason(side s) const;
    /// False when the answer is one a man in the middle would send.
    bool scan_startup_answer(const std::uint8_t* data, std::size_t n);
    bool unanswered(side s) const;
    void uncount_member();
    void count_bytes(side s, std::size_t n);
    void retry_unanswered(std::string_view why);
    void arm_idle_check();
    /// An old leader that may take its lock back (topology::fenced): nothing
    /// is read or written either way until it leads again (resume) or is
    /// known not to (the session is cut, so no answer it gave after losing
    /// the lock reaches the client).
    void fence();
    void unfence();
    /// The client went away while it waited for a member: nothing goes on for it.
    bool left_while_waiting(side s);
    // refusing and cancelling
    void refuse(close_reason why, std::string_view sqlstate, std::string message);
    /// The drain's idle point: 57P01 to the client, Terminate to the member, close.
    bool close_if_idle();
    void close_drained(bool idle);
    void send_refusal();
    void decline_encryption();
    void flush_to_client();
    void forward_cancel();
    void next_cancel_target();
    void send_cancel();
    // deadlines
    void arm(std::chrono::milliseconds after, close_reason why);
    void disarm();
    void on_deadline();

    int from(side s) const { return s == from_client ? client_.get() : server_.get(); }
    int to(side s) const { return s == from_client ? server_.get() : client_.get(); }
    const conf::listener_config& listener() const { return *listener_cfg_; }
    const conf::timeouts_config& timeouts() const { return cfg_->timeouts; }
    listener_counters& counters() const;
    member_counters& member_counters_of() const;

    worker& owner_;
    conf::config_ptr cfg_;                           ///< the configuration it was accepted under
    const conf::listener_config* listener_cfg_;      ///< inside cfg_
    listener_book* book_;
    unique_fd client_;
    unique_fd server_;
    std::array<end, 2> ends_;
    std::optional<deadline_queue::handle> deadline_;  ///< in the worker's queue
    close_reason deadline_why_ = close_reason::startup_timeout;
    phase phase_ = phase::first_packet;
    std::chrono::steady_clock::time_point started_;
    bool routing_started_ = false;
    std::chrono::steady_clock::time_point route_deadline_{};  ///< routing began + wait_for_backend
    std::string last_connect_error_;

    std::vector<std::uint8_t> first_;        ///< first packet bytes, kept until the member answers
    std::size_t first_sent_ = 0;             ///< of first_, to the member being connected to
    std::size_t first_length_ = 0;           ///< the first packet's own length in first_
    std::optional<protocol::first_packet> packet_;
    int declines_ = 0;

    std::optional<close_reason> refuse_on_first_;   ///< maxconn: refuse once the first packet is in
    close_reason refusal_ = close_reason::no_backend;
    std::vector<std::uint8_t> refusal_bytes_;
    enum class refusal_step { declining, reading, answering } refusal_step_ = refusal_step::answering;
    pending to_client_;                      ///< the refusal or the 'N' that declines encryption
    std::string refusal_text_;

    std::optional<health::member_id> member_;   ///< the member connected or being connected to
    std::string member_name_;
    member_book* member_book_ = nullptr;
    member_book* slot_ = nullptr;            ///< the member slot route() took (member maxconn, leastconn)
    conf::listener_role role_ = conf::listener_role::write;   ///< the class it was routed by (the listener's or a fallback)
    bool member_full_ = false;               ///< the last route found members, all at their maxconn
    void release_slot();
    /// What the listener's class is called in a refusal ("healthy replica").
    std::string class_text() const;
    tcp::endpoint endpoint_;
    int attempts_ = 0;                       ///< in this round (retries + 1 at most)
    int attempts_total_ = 0;                 ///< in all (timeouts.max_attempts, then only routing changes)
    int rounds_ = 0;                         ///< rounds of attempts that all failed (the pause doubles)
    bool counted_ = false;                   ///< counted in the listener's active sessions
    bool member_counted_ = false;

    // Each side reads into a small buffer of its own; a full one moves to a
    // pool buffer for the rest, so a large result still leaves in one write.
    static constexpr std::size_t small_read = 512;
    std::array<std::array<std::uint8_t, small_read>, 2> small_{};
    std::array<buffer_pool::lease, 2> in_flight_;  ///< a large read, only while its write is pending
    std::array<pending, 2> out_;                   ///< read from from(s), not yet all written to to(s)
    // Events that came while the phase had no use for them: their bytes are
    // read once relaying begins (an edge is reported only once).
    std::array<bool, 2> unread_{false, false};
    // The kernel reported the peer's FIN (or a reset): reads go on until they
    // see it, since a short read no longer means "nothing more will come"
    // and that event is not reported again.
    std::array<bool, 2> peer_finished_{false, false};
    std::array<bool, 2> eof_{false, false};  ///< a read returned the end of the stream
    bool fenced_ = false;                    ///< paused: see fence()
    std::array<std::chrono::steady_clock::time_point, 2> last_read_{};
    std::array<std::uint64_t, 2> bytes_{0, 0};

    // Reading the member's plaintext startup answer for its BackendKeyData,
    // until ReadyForQuery; nothing is parsed after that.
    bool scanning_ = false;
    /// SSL/GSS request forwarded, the member's one-byte answer not yet relayed:
    /// any client byte now is an injection (CVE-2021-3935).
    bool awaiting_encryption_answer_ = false;
    bool encrypted_ = false;                   ///< the member said yes to SSL/GSS
    /// The member said 'N': the client's next packet may be another request.
    bool after_decline_ = false;
    std::array<std::uint8_t, 8> after_decline_head_{};   ///< its first 8 bytes, as they come
    std::size_t after_decline_have_ = 0;
    bool relay_after_decline(const std::uint8_t* data, std::size_t n);
    std::vector<std::uint8_t> startup_answer_;
    std::optional<protocol::cancel_key> key_;  ///< registered with the worker's cancel registry
    // Where the plaintext session stands between transactions (a drain waits for idle).
    protocol::transaction_state transaction_;
    bool tracking_ = false;                    ///< plaintext and framed from its first byte
    std::chrono::steady_clock::time_point ready_at_{};   ///< startup answered (first ReadyForQuery)
    // A drain in progress.
    std::string drain_why_;
    std::chrono::steady_clock::time_point drain_not_before_{};
    std::chrono::steady_clock::time_point drain_deadline_{};
    bool draining_ = false;
    bool drain_refuses_unrouted_ = true;      ///< a first packet or a hold is refused (not an upgrade's drain)
    bool soft_drain_ = false;                 ///< drained because its member left the class: no deadline, undone if it returns
    void soft_drain(std::string why);
    void undrain();
    std::optional<deadline_queue::handle> drain_timer_;
    void arm_drain(std::chrono::steady_clock::time_point at);

    std::vector<std::pair<health::member_id, tcp::endpoint>> cancel_targets_;   ///< the key's owner, else every candidate
    std::size_t cancel_next_ = 0;
    std::string client_text_;
};

}  // namespace patroxy::proxy
