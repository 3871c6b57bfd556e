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
// the member loses its role. A refused client gets an ErrorResponse.
//
// Files by concern: session.cpp (first packet, routing, connecting, deadlines,
// closing), session_relay.cpp, session_refusal.cpp, session_cancel.cpp.

#include "conf/config.hpp"
#include "protocol/first_packet.hpp"
#include "protocol/server_message.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/close_reason.hpp"
#include "proxy/event_loop.hpp"

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
    std::size_t listener = 0;
    std::optional<std::size_t> member;
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
    /// `peer`: the client's address, as accept reported it.
    session(worker& owner, std::size_t listener, unique_fd client, const tcp::endpoint& peer);
    ~session();
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    /// Begins reading the first packet. `over_limit`: the listener is past
    /// maxconn, so the client is answered 53300 once it has spoken.
    void start(bool over_limit);
    /// The worker has a new topology: route a held session, or cut one whose
    /// member lost the role this listener routes by.
    void on_topology();
    /// Ends the session now (idempotent).
    void close(close_reason why, std::string_view detail = {});
    /// Drain: a session still waiting for a member is refused now.
    void refuse_if_waiting();
    /// A copy of what the stats page shows (worker thread).
    session_view view(std::chrono::steady_clock::time_point now) const;

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
    bool watch(side s);
    // first packet
    void read_first();
    void on_first_packet(protocol::first_packet packet, std::size_t consumed);
    // routing and connecting
    void route();
    void hold(std::chrono::milliseconds retry_after);
    void leave_hold();
    std::optional<std::string> open_to(std::size_t member);  ///< an error, or the socket connecting
    void connect_to(std::size_t member);
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
    void scan_startup_answer(const std::uint8_t* data, std::size_t n);
    bool unanswered(side s) const;
    void uncount_member();
    void count_bytes(side s, std::size_t n);
    void retry_unanswered(std::string_view why);
    void arm_idle_check();
    // refusing and cancelling
    void refuse(close_reason why, std::string_view sqlstate, std::string message);
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
    const conf::listener_config& listener() const;
    std::string describe_client() const;

    worker& owner_;
    std::size_t listener_;
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
    std::optional<protocol::first_packet> packet_;
    int declines_ = 0;

    std::optional<close_reason> refuse_on_first_;   ///< maxconn: refuse once the first packet is in
    close_reason refusal_ = close_reason::no_backend;
    std::vector<std::uint8_t> refusal_bytes_;
    enum class refusal_step { declining, reading, answering } refusal_step_ = refusal_step::answering;
    pending to_client_;                      ///< the refusal or the 'N' that declines encryption
    std::string refusal_text_;

    std::optional<std::size_t> member_;      ///< the member connected or being connected to
    int attempts_ = 0;
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
    std::array<std::chrono::steady_clock::time_point, 2> last_read_{};
    std::array<std::uint64_t, 2> bytes_{0, 0};

    // Reading the member's plaintext startup answer for its BackendKeyData,
    // until ReadyForQuery; nothing is parsed after that.
    bool scanning_ = false;
    bool awaiting_encryption_answer_ = false;  ///< SSL/GSS request: 'N' means plaintext follows
    bool encrypted_ = false;                   ///< the member said yes to SSL/GSS
    std::vector<std::uint8_t> startup_answer_;
    std::optional<protocol::cancel_key> key_;  ///< registered with the worker's cancel registry

    std::vector<std::size_t> cancel_targets_;   ///< CancelRequest: the key's owner, else every candidate
    std::size_t cancel_next_ = 0;
    std::string client_text_;
};

}  // namespace patroxy::proxy
