#include "proxy/worker.hpp"

#include "app/log.hpp"

#include <algorithm>

#include <netinet/tcp.h>
#include <sys/socket.h>

namespace patroxy::proxy {

namespace {
constexpr std::chrono::milliseconds accept_back_off{100};
constexpr std::chrono::seconds accept_failure_log_interval{10};
// Accepts per wake-up: the rest wait for the next turn of the loop, so one
// busy listener does not hold up the sessions already open.
constexpr int accepts_per_turn = 16;

std::error_code enable(int fd, int level, int option) {
    const int on = 1;
    return ::setsockopt(fd, level, option, &on, sizeof on) == 0 ? std::error_code{} : last_errno();
}
}  // namespace

worker::worker(const conf::config& cfg, std::vector<listener_slots>& slots, cancel_registry& cancels,
               trouble_reporter& trouble, health::topology_ptr initial)
    : cfg_(cfg),
      slots_(slots),
      cancels_(cancels),
      trouble_(trouble),
      counters_(cfg.listeners.size(), cfg.members.size()),
      topology_(std::move(initial)) {
    for (const auto& m : cfg.members) {
        member_endpoints_.emplace_back(net::ip::make_address(m.host), m.port);
    }
}

worker::~worker() {
    stop();
    // Sessions first: they give their buffers back and leave the cancel registry.
    each_session([](session& s) { s.close(close_reason::shutdown, "worker stopped"); });
    closed_.clear();
}

void worker::open_listeners() {
    for (std::size_t i = 0; i < cfg_.listeners.size(); ++i) {
        const auto& l = cfg_.listeners[i];
        const tcp::endpoint ep(net::ip::make_address(l.bind), l.port);
        unique_fd fd(::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        std::error_code ec = fd ? std::error_code{} : last_errno();
        if (!ec) {
            ec = enable(fd.get(), SOL_SOCKET, SO_REUSEADDR);
        }
        if (!ec) {
            // The kernel spreads accepts across the workers' sockets.
            ec = enable(fd.get(), SOL_SOCKET, SO_REUSEPORT);
        }
        if (!ec && ep.address().is_v4()) {
            // Bind a VIP that is not on this host yet (no net.ipv4.ip_nonlocal_bind).
            ec = enable(fd.get(), IPPROTO_IP, IP_FREEBIND);
        }
        // Accepted sockets inherit these: no two setsockopt calls per client.
        if (!ec) {
            ec = enable(fd.get(), IPPROTO_TCP, TCP_NODELAY);
        }
        if (!ec) {
            ec = enable(fd.get(), SOL_SOCKET, SO_KEEPALIVE);
        }
        if (!ec && ::bind(fd.get(), ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
            ec = last_errno();
        }
        if (!ec && ::listen(fd.get(), SOMAXCONN) != 0) {
            ec = last_errno();
        }
        if (ec) {
            throw std::runtime_error("listener '" + l.name + "' cannot listen on " + l.bind + ":" +
                                     std::to_string(l.port) + ": " + ec.message());
        }
        auto entry = std::make_unique<listening>();
        entry->owner = this;
        entry->index = i;
        entry->fd = std::move(fd);
        listeners_.push_back(std::move(entry));
    }
}

void worker::start() {
    for (auto& l : listeners_) {
        // Level-triggered: connections left for the next turn are reported again.
        if (const auto ec = loop_.watch(l->fd.get(), EPOLLIN, l.get())) {
            throw std::runtime_error("listener '" + cfg_.listeners[l->index].name + "': " + ec.message());
        }
    }
    thread_ = std::thread([this] { loop_.run(); });
}

void worker::accept_some(std::size_t listener) {
    auto& l = *listeners_[listener];
    for (int i = 0; i < accepts_per_turn && accepting_ && l.fd; ++i) {
        tcp::endpoint peer;
        auto len = static_cast<socklen_t>(peer.capacity());
        // The peer address comes with accept itself (no getpeername per session).
        const int fd = ::accept4(l.fd.get(), peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (would_block(errno) || errno == EINTR || errno == ECONNABORTED) {
                return;
            }
            // Out of descriptors or memory: back off briefly instead of
            // spinning, and say so now and then rather than ten times a second.
            const auto why = last_errno();
            const auto now = std::chrono::steady_clock::now();
            if (now - accept_failure_logged_ >= accept_failure_log_interval) {
                accept_failure_logged_ = now;
                PATROXY_LOG(error, "proxy") << "accept on listener '" << cfg_.listeners[listener].name
                                            << "' failed: " << why.message() << " (retrying every "
                                            << accept_back_off.count() << " ms)";
            }
            return pause_accepting(listener);
        }
        peer.resize(len);
        const int active = count_in(slots_[listener].active, slots_[listener].peak);
        auto s = std::make_shared<session>(*this, listener, unique_fd(fd), peer);
        sessions_.emplace(s.get(), s);
        session_count_.store(sessions_.size(), std::memory_order_relaxed);
        s->start(active > cfg_.listeners[listener].maxconn);
    }
}

void worker::pause_accepting(std::size_t listener) {
    auto& l = *listeners_[listener];
    loop_.rewatch(l.fd.get(), 0, &l);
    loop_.deadlines().add(std::chrono::steady_clock::now() + accept_back_off, [this, listener] {
        auto& again = *listeners_[listener];
        if (accepting_ && again.fd) {
            loop_.rewatch(again.fd.get(), EPOLLIN, &again);
        }
    });
}

void worker::remove(session* s) {
    const auto it = sessions_.find(s);
    if (it == sessions_.end()) {
        return;
    }
    if (closed_.empty()) {
        loop_.defer([this] { closed_.clear(); });
    }
    closed_.push_back(std::move(it->second));
    sessions_.erase(it);
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void worker::post_topology(health::topology_ptr t) {
    loop_.post([this, t = std::move(t)]() mutable { on_topology(std::move(t)); });
}

void worker::each_session(const std::function<void(session&)>& act) {
    // A session may close (and leave the map) while we walk it: walk a copy.
    std::vector<std::shared_ptr<session>> now;
    now.reserve(sessions_.size());
    for (const auto& [raw, s] : sessions_) {
        now.push_back(s);
    }
    for (const auto& s : now) {
        act(*s);
    }
}

void worker::on_topology(health::topology_ptr t) {
    topology_ = std::move(t);
    each_session([](session& s) { s.on_topology(); });
}

void worker::post_stop_accepting() {
    loop_.post([this] {
        accepting_ = false;
        for (auto& l : listeners_) {
            l->fd.reset();  // closing takes it out of the epoll set
        }
        each_session([](session& s) { s.refuse_if_waiting(); });
    });
}

void worker::post_close_all() {
    loop_.post([this] {
        each_session([](session& s) { s.close(close_reason::shutdown, "drain limit reached"); });
    });
}

void worker::post_describe(std::size_t limit, std::function<void(std::vector<session_view>)> reply) {
    loop_.post([this, limit, reply = std::move(reply)] {
        const auto now = std::chrono::steady_clock::now();
        std::vector<session_view> views;
        views.reserve(sessions_.size());
        for (const auto& [raw, s] : sessions_) {
            views.push_back(s->view(now));
        }
        const auto keep = std::min(limit, views.size());
        std::partial_sort(views.begin(), views.begin() + static_cast<std::ptrdiff_t>(keep), views.end(),
                          runs_longer);
        views.resize(keep);
        reply(std::move(views));
    });
}

void worker::stop() {
    if (thread_.joinable()) {
        loop_.stop();
        thread_.join();
    }
}

}  // namespace patroxy::proxy
