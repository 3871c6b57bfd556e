#include "proxy/event_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

namespace patroxy::proxy {

void unique_fd::reset(int fd) {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    fd_ = fd;
}

int deadline_queue::wait_ms(clock::time_point now) const {
    if (entries_.empty()) {
        return -1;
    }
    const auto left = entries_.begin()->first - now;
    if (left <= clock::duration::zero()) {
        return 0;
    }
    // Rounded up: waking a little early would only find nothing due. At
    // most an hour, so a timeout of days still fits epoll_wait's int.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left);
    return static_cast<int>(std::min<std::chrono::milliseconds>(ms, std::chrono::hours{1}).count());
}

void deadline_queue::fire_due(clock::time_point now) {
    // A deadline's work may add or remove others while we walk.
    while (!entries_.empty() && entries_.begin()->first <= now) {
        auto due = std::move(entries_.begin()->second);
        entries_.erase(entries_.begin());
        due();
    }
}

event_loop::event_loop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wakeup_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!epoll_ || !wakeup_) {
        throw std::system_error(last_errno(), "event loop");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wakeup descriptor is the only one without a watcher
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeup_.get(), &ev) != 0) {
        throw std::system_error(last_errno(), "event loop");
    }
}

event_loop::~event_loop() = default;

std::error_code event_loop::control(int op, int fd, std::uint32_t events, watcher* w) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = w;
    return ::epoll_ctl(epoll_.get(), op, fd, &ev) == 0 ? std::error_code{} : last_errno();
}

std::error_code event_loop::watch(int fd, std::uint32_t events, watcher* w) {
    return control(EPOLL_CTL_ADD, fd, events, w);
}

std::error_code event_loop::rewatch(int fd, std::uint32_t events, watcher* w) {
    return control(EPOLL_CTL_MOD, fd, events, w);
}

void event_loop::unwatch(int fd) {
    epoll_event ev{};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &ev);
}

void event_loop::post(std::function<void()> work) {
    bool first = false;
    {
        const std::lock_guard lock(posted_mutex_);
        first = posted_.empty();
        posted_.push_back(std::move(work));
    }
    if (first) {  // later ones find the loop already woken
        wake();
    }
}

void event_loop::stop() {
    stopping_.store(true, std::memory_order_release);
    wake();
}

void event_loop::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wakeup_.get(), &one, sizeof one);
}

void event_loop::drain_posted() {
    std::uint64_t count = 0;
    [[maybe_unused]] const auto n = ::read(wakeup_.get(), &count, sizeof count);
    std::vector<std::function<void()>> work;
    {
        const std::lock_guard lock(posted_mutex_);
        work.swap(posted_);
    }
    for (auto& w : work) {
        w();
    }
}

void event_loop::run() {
    constexpr int batch = 128;
    epoll_event events[batch];
    while (!stopping_.load(std::memory_order_acquire)) {
        const int timeout = deferred_.empty() ? deadlines_.wait_ms(deadline_queue::clock::now()) : 0;
        const int n = ::epoll_wait(epoll_.get(), events, batch, timeout);
        if (n < 0 && errno != EINTR) {
            throw std::system_error(last_errno(), "epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            if (auto* w = static_cast<watcher*>(events[i].data.ptr)) {
                w->on_ready(events[i].events);
            } else {
                drain_posted();
            }
        }
        if (!deferred_.empty()) {
            auto again = std::move(deferred_);
            deferred_.clear();
            for (auto& d : again) {
                d();
            }
        }
        deadlines_.fire_due(deadline_queue::clock::now());
    }
}

}  // namespace patroxy::proxy
