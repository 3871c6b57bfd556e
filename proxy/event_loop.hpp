#pragma once
// One worker's readiness loop: epoll, a deadline queue that sets epoll_wait's
// timeout, and work posted from other threads.
//
// Why not asio's io_context here (it still runs the control thread): asio 1.74
// retries a read after every short one (a recv that finds nothing), re-arms
// the descriptor with EPOLL_CTL_MOD whenever it waits without reading, and
// accepts without SOCK_NONBLOCK (two ioctl per session). Together that was 6.6
// system calls per query round trip and 26.4 per session where HAProxy's own
// loop needs 5.5 and 23.3 (bench/PROFILE.md). Sockets here are registered
// once, edge-triggered for both directions, and a short read means drained.
// Worker thread only, except post() and stop().

#include <sys/epoll.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <system_error>
#include <vector>

namespace patroxy::proxy {

/// Owns a descriptor and closes it (which also takes it out of any epoll set).
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        reset(o.release());
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }
    /// The descriptor, or -1.
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    /// Closes the descriptor held now and holds `fd` instead.
    void reset(int fd = -1);
    /// Lets go of the descriptor without closing it.
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }

private:
    int fd_ = -1;
};

/// The failure of the system call just made.
inline std::error_code last_errno() { return {errno, std::system_category()}; }

/// True when a non-blocking call failed only because it would have to wait.
inline bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

/// Deadlines of one worker (startup, hold, connect, idle, accept back-off),
/// earliest first. Worker thread only.
class deadline_queue {
public:
    using clock = std::chrono::steady_clock;
    using entries = std::multimap<clock::time_point, std::function<void()>>;
    using handle = entries::iterator;

    /// `due` runs once `when` has passed, unless removed first.
    handle add(clock::time_point when, std::function<void()> due) { return entries_.emplace(when, std::move(due)); }
    void remove(handle h) { entries_.erase(h); }
    /// Milliseconds until the earliest deadline (rounded up), -1 when none.
    int wait_ms(clock::time_point now) const;
    /// Runs every deadline that has passed by `now`.
    void fire_due(clock::time_point now);

private:
    entries entries_;
};

class event_loop {
public:
    /// Told what epoll reported for a descriptor it watches.
    class watcher {
    public:
        virtual void on_ready(std::uint32_t events) = 0;

    protected:
        ~watcher() = default;
    };

    event_loop();
    ~event_loop();
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;

    /// Adds `fd` with `events` (EPOLLET and friends); `w` must outlive the
    /// registration or stay valid until the end of the current batch.
    std::error_code watch(int fd, std::uint32_t events, watcher* w);
    /// Changes what `fd` is watched for.
    std::error_code rewatch(int fd, std::uint32_t events, watcher* w);
    /// Takes `fd` out of the set (closing it does that too).
    void unwatch(int fd);
    /// Any thread: runs `work` on the loop's thread soon.
    void post(std::function<void()> work);
    /// Runs `work` once this batch of events is handled, before waiting again:
    /// a descriptor that still has bytes after a bounded amount of work.
    void defer(std::function<void()> work) { deferred_.push_back(std::move(work)); }
    deadline_queue& deadlines() { return deadlines_; }
    /// Handles events until stop().
    void run();
    /// Any thread: makes run() return.
    void stop();

private:
    std::error_code control(int op, int fd, std::uint32_t events, watcher* w);
    void wake();
    void drain_posted();

    unique_fd epoll_;
    unique_fd wakeup_;  ///< eventfd: post() and stop() from other threads
    deadline_queue deadlines_;
    std::vector<std::function<void()>> deferred_;
    std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_;
    std::atomic<bool> stopping_{false};
};

}  // namespace patroxy::proxy
