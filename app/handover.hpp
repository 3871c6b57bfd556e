#pragma once
// A binary upgrade without a refused connection: the running patroxy hands
// its listening sockets (every listener's, the stats port's and this control
// socket's own) to the next process over a Unix socket, with SCM_RIGHTS, so
// no connection waiting in an accept queue is lost (closing a SO_REUSEPORT
// listener would drop its queue). With them goes what the next process must
// not learn afresh: the VRRP state (a master stays master: the VIP does not
// move, no priority-0 advert) and each member's last Patroni answer (routing
// goes on before the first check of its own; haproxy#918).
//
// The exchange, on a connection to `control_socket` (mode 0600, and only a
// peer of the same user or root is answered):
//   next -> running:  "HANDOVER <version>\n"
//   running -> next:  Int32 length | JSON header ("handover": 2, the protocol),
//                     then the descriptors in messages of at most 250
//                     (SCM_RIGHTS), in the header's order
//   next -> running:  "TAKEN adopted\n" or "TAKEN not-adopted\n" once it is
//                     ready to serve on them (it has started nothing yet: no
//                     worker, no VRRP, no control socket); "adopted": it will
//                     be master of the VRRP instance the header names
//                     ("vrrp": state, interface, address, prefix, vrid), so
//                     the VIP stays; "not-adopted" (its VIP is off, another
//                     one, or cannot run): the running one removes the VIP it
//                     holds (priority-0 advert, address deleted) before it goes
//   running -> next:  "OK\n": the running one lets go (closes its copies,
//                     drains its sessions, exits); only now does the next one
//                     start.
// One side decides, once: the running process either reads TAKEN within
// confirm_timeout and answers OK, or closes the connection and accepts again.
// The next process starts only on the OK and waits for it longer than the
// running one can wait for TAKEN; on anything else (a failed TAKEN write,
// the connection closed, no OK in time) it exits at once, touching neither
// the VIP nor the sockets (they are still the running one's). So a TAKEN that
// comes too late can never leave two processes serving, and nobody needs to
// be killed. With an older running patroxy (no "handover" in its header) the
// next process sends a plain TAKEN and awaits nothing, as those did; a plain
// TAKEN (an older next process) counts as taken and adopted.

#include "proxy/event_loop.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace patroxy::app {

/// The protocol number in the header ("handover"); 2 adds the OK.
inline constexpr int handover_protocol = 2;

/// What a running patroxy sends: the header and the descriptors it lists.
struct handover_payload {
    nlohmann::json header;             ///< "sockets": [{"kind": "listener"|"stats"|"control", "name": ...}], ...
    /// In the order of header["sockets"]: copies (dup'ed when the payload is
    /// made, closed with it), so that a socket closed meanwhile (a reload)
    /// cannot make the exchange send a number reused for something else.
    std::vector<proxy::unique_fd> fds;
};

/// What the next process received; it owns the descriptors.
struct received_handover {
    nlohmann::json header;
    std::vector<proxy::unique_fd> fds;
    int connection = -1;               ///< to the previous process, for the "TAKEN" (closed by confirm())
    /// Tells the previous process that the sockets are taken (and whether
    /// this one adopts the VIP) and waits for its OK (up to `wait`); closes
    /// the connection. False when the previous process did not let go: then
    /// this one must start nothing and exit.
    bool confirm(bool adopted, std::chrono::milliseconds wait = std::chrono::seconds(20));
    received_handover() = default;
    received_handover(received_handover&& o) noexcept
        : header(std::move(o.header)), fds(std::move(o.fds)), connection(std::exchange(o.connection, -1)) {}
    received_handover& operator=(received_handover&& o) noexcept {
        std::swap(header, o.header);
        std::swap(fds, o.fds);
        std::swap(connection, o.connection);
        return *this;
    }
    received_handover(const received_handover&) = delete;
    received_handover& operator=(const received_handover&) = delete;
    ~received_handover();
};

/// The next process's side, blocking with timeouts (it has nothing else to
/// do yet): asks the patroxy at `path` for its sockets. nullopt with `why`
/// when none answers there.
std::optional<received_handover> request_handover(const std::string& path, std::string& why);

/// The running process's side: listens at `path` (or on an inherited socket)
/// on the control io_context and answers one handover at a time, never
/// blocking the thread.
class control_server {
public:
    /// Called for a request: returns what to send (it may stop accepting
    /// meanwhile); `done(true, adopted)` once the next process confirmed (and
    /// was told OK), `done(false, false)` when it did not within the time allowed.
    struct handler {
        std::function<handover_payload()> prepare;
        std::function<void(bool taken, bool adopted)> done;
    };

    /// Binds `path` (a stale socket file there is replaced), or takes
    /// `inherited`; throws when it cannot, or when a live process already
    /// answers at `path` (another instance's upgrade path is never taken).
    /// `confirm_timeout`: how long the next process has for its TAKEN.
    control_server(boost::asio::io_context& ioc, const std::string& path, handler h,
                   std::optional<int> inherited = std::nullopt,
                   std::chrono::milliseconds confirm_timeout = std::chrono::seconds(15));
    void start();
    /// Stops listening; `unlink` also removes the path (not after a handover:
    /// the next process listens there now).
    void stop(bool unlink);
    int native_handle() { return acceptor_.native_handle(); }

private:
    class exchange;
    void do_accept();

    boost::asio::io_context& ioc_;
    std::string path_;
    handler handler_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    std::chrono::milliseconds confirm_timeout_;
    bool busy_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace patroxy::app
