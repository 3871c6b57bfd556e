#include "app/notify.hpp"

#include "base/log.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace patroxy::app::notify {

namespace {

// How often STATUS= is looked at again (sent only when it changed).
constexpr std::chrono::seconds status_every{5};
// How often the first health round is looked for before READY=1.
constexpr std::chrono::milliseconds ready_poll{50};

std::string_view socket_from_env() {
    const char* s = std::getenv("NOTIFY_SOCKET");
    return s == nullptr ? std::string_view{} : std::string_view{s};
}

}  // namespace

bool enabled() { return !socket_from_env().empty(); }

bool send(std::string_view state, std::string_view socket_name) {
    const auto name = socket_name.empty() ? socket_from_env() : socket_name;
    // sd_notify(3): an absolute path, or '@' for the abstract namespace.
    if (name.size() < 2 || (name.front() != '/' && name.front() != '@')) {
        return false;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (name.size() > sizeof addr.sun_path) {
        return false;
    }
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name.front() == '@') {
        addr.sun_path[0] = '\0';  // abstract: no terminating NUL, the length says where it ends
    }
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                            (name.front() == '/' ? 1 : 0));
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    // The kernel adds our credentials: systemd learns the sender's PID itself.
    const auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len);
    const int err = errno;
    ::close(fd);
    if (sent < 0) {
        PATROXY_LOG(debug, "notify") << "cannot notify " << name << ": " << std::strerror(err);
        return false;
    }
    return static_cast<std::size_t>(sent) == state.size();
}

std::string monotonic_usec() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                      static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
    return "MONOTONIC_USEC=" + std::to_string(usec);
}

service::service(boost::asio::io_context& control, hooks h)
    : control_(control), hooks_(std::move(h)), timer_(control) {}

void service::start(std::chrono::milliseconds limit, bool took_over) {
    if (!enabled()) {
        return;
    }
    took_over_ = took_over;
    ready_by_ = std::chrono::steady_clock::now() + limit;
    wait_ready();
}

void service::wait_ready() {
    if (stopped_) {
        return;
    }
    const bool round_in = !hooks_.first_round || hooks_.first_round();
    if (round_in || std::chrono::steady_clock::now() >= ready_by_) {
        ready_ = true;
        last_status_ = hooks_.status ? hooks_.status() : std::string{};
        std::string msg = "READY=1\nSTATUS=" + last_status_;
        if (took_over_) {
            msg += "\nMAINPID=" + std::to_string(::getpid());
        }
        send(msg);
        PATROXY_LOG(info, "notify") << "ready" << (round_in ? "" : " (the first health round is not complete)")
                                    << (took_over_ ? "; main PID now " + std::to_string(::getpid()) : std::string{});
        timer_.expires_after(status_every);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) {
                refresh_status();
            }
        });
        return;
    }
    timer_.expires_after(ready_poll);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            wait_ready();
        }
    });
}

void service::send_status(std::string_view prefix) {
    auto now = hooks_.status ? hooks_.status() : std::string{};
    if (now != last_status_ || !prefix.empty()) {
        last_status_ = std::move(now);
        send(std::string(prefix) + "STATUS=" + last_status_);
    }
}

void service::refresh_status() {
    if (stopped_) {
        return;
    }
    send_status();
    timer_.expires_after(status_every);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            refresh_status();
        }
    });
}

void service::reloading() {
    if (ready_ && !stopped_) {
        send("RELOADING=1\n" + monotonic_usec() + "\nSTATUS=reloading the configuration");
    }
}

void service::reloaded() {
    if (ready_ && !stopped_) {
        send_status("READY=1\n");
    }
}

void service::stopping(std::chrono::milliseconds drain) {
    if (!enabled() || stopped_) {
        return;
    }
    stop();
    // systemd waits TimeoutStopSec; this makes it at least the drain and a margin.
    const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(drain + std::chrono::seconds(5)).count();
    send("STOPPING=1\nEXTEND_TIMEOUT_USEC=" + std::to_string(usec) + "\nSTATUS=draining sessions, then stopping");
}

void service::handed_over(std::string_view why) {
    if (!enabled() || stopped_) {
        return;
    }
    stop();
    send("STATUS=" + std::string(why));
}

void service::stop() {
    stopped_ = true;
    timer_.cancel();
}

}  // namespace patroxy::app::notify
