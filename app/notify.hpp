#pragma once
// Telling systemd what patroxy is doing (Type=notify), without libsystemd:
// the protocol is one AF_UNIX datagram to $NOTIFY_SOCKET holding
// newline-separated KEY=VALUE pairs (sd_notify(3); its stability is promised
// in systemd.io/PORTABILITY_AND_STABILITY). A socket name starting with '@'
// is in the abstract namespace. Without $NOTIFY_SOCKET every call is a no-op.
//
// What patroxy sends (systemd 252, Debian 12):
//   READY=1          the listeners are bound and the first health round is in
//                    (every member checked once, or a bounded wait)
//   MAINPID=<pid>    with READY=1 from a process that took over by a binary
//                    upgrade: it is the service's main process now, and the
//                    exit of the old one (which drains) is not the service's
//                    (needs NotifyAccess=all: the sender is not the main PID yet)
//   RELOADING=1      with MONOTONIC_USEC, a SIGHUP reload begins; READY=1 ends it
//   STOPPING=1       with EXTEND_TIMEOUT_USEC, a SIGTERM drain begins (not after
//                    a handover: the service goes on in the next process)
//   STATUS=...       one line for `systemctl status`, when it changes

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace patroxy::app::notify {

/// Sends `state` to $NOTIFY_SOCKET (or to `socket_name`, when not empty):
/// true when a datagram went out, false without a socket or on an error.
bool send(std::string_view state, std::string_view socket_name = {});

/// Whether $NOTIFY_SOCKET is set (a service manager listens).
bool enabled();

/// "MONOTONIC_USEC=<CLOCK_MONOTONIC in microseconds>", as systemd's
/// reload protocol wants it beside RELOADING=1.
std::string monotonic_usec();

/// The daemon's side of the protocol, on the control io_context: when to say
/// READY=1, the STATUS= line kept current, and the reload and stop messages.
class service {
public:
    /// `first_round()` is true once every member was checked once; `status()`
    /// is the one-line summary.
    struct hooks {
        std::function<bool()> first_round;
        std::function<std::string()> status;
    };

    service(boost::asio::io_context& control, hooks h);

    /// Starts waiting for the first health round (at most `limit`), then
    /// sends READY=1 (with MAINPID= when `took_over`), then keeps STATUS=
    /// current every few seconds.
    void start(std::chrono::milliseconds limit, bool took_over);
    /// A SIGHUP reload begins.
    void reloading();
    /// The reload ended (applied or refused: the service runs either way).
    void reloaded();
    /// A SIGTERM drain begins; systemd waits `drain` (and a margin) for it.
    void stopping(std::chrono::milliseconds drain);
    /// A handover to the next process is done: only STATUS= from now on.
    void handed_over(std::string_view why);
    /// Stops the timers (no more messages but what is called explicitly).
    void stop();
    /// READY=1 went out.
    bool ready() const { return ready_; }

private:
    void wait_ready();
    void refresh_status();
    void send_status(std::string_view prefix = {});

    boost::asio::io_context& control_;
    hooks hooks_;
    boost::asio::steady_timer timer_;
    std::chrono::steady_clock::time_point ready_by_{};
    bool took_over_ = false;
    bool ready_ = false;
    bool stopped_ = false;
    std::string last_status_;
};

}  // namespace patroxy::app::notify
