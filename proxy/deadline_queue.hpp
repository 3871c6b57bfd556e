#pragma once
// All of one worker's session deadlines (startup, hold, connect, idle) on a
// single asio timer. A steady_timer per session re-arms the kernel's timer
// (timerfd_settime) whenever its deadline becomes the earliest, which a
// fresh connect deadline nearly always is: about one system call per session.
// Here the timer moves only when a new deadline is earlier than the one it
// already waits for; a removed deadline just lets it wake once for nothing.
// Worker thread only.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>

namespace patroxy::proxy {

class session;

class deadline_queue {
public:
    using clock = std::chrono::steady_clock;
    /// Keeps the session alive until its deadline fires or is removed, as a
    /// pending timer handler would.
    using entries = std::multimap<clock::time_point, std::shared_ptr<session>>;
    using handle = entries::iterator;

    explicit deadline_queue(boost::asio::io_context& ioc) : timer_(ioc) {}

    handle add(clock::time_point when, std::shared_ptr<session> s);
    void remove(handle h) { entries_.erase(h); }

private:
    void arm(clock::time_point when);
    void fire_due();

    entries entries_;
    boost::asio::steady_timer timer_;
    clock::time_point armed_for_ = clock::time_point::max();
};

}  // namespace patroxy::proxy
