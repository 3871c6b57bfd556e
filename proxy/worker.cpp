#include "proxy/worker.hpp"

#include "base/log.hpp"

#include <algorithm>

#include <netinet/tcp.h>
#include <sys/socket.h>

namespace patroxy::proxy {

namespace {
constexpr std::chrono::milliseconds accept_back_off{100};
// At a connection ceiling: look again this soon (a session closing on this
// worker resumes accepting at once; one on another worker is seen here).
constexpr std::chrono::milliseconds full_back_off{50};
constexpr std::chrono::seconds accept_failure_log_interval{10};
// Accepts per wake-up: the rest wait for the next turn of the loop, so one
// busy listener does not hold up the sessions already open.
constexpr int accepts_per_turn = 16;
}  // namespace

worker::worker(std::size_t index, connection_ceiling& ceiling, cancel_registry& cancels, trouble_reporter& trouble,
               routing_ptr initial)
    : index_(index), ceiling_(ceiling), cancels_(cancels), trouble_(trouble), routing_(std::move(initial)) {}

worker::~worker() {
    stop();
    // Sessions first: they give their buffers back and leave the cancel registry.
    each_session([](session& s) { s.close(close_reason::shutdown, "worker stopped"); });
    closed_.clear();
}

void worker::adopt(listener_changes changes) { take(std::move(changes), false); }

void worker::retire(std::unique_ptr<listening> l) {
    if (!l) {
        return;
    }
    // Out of the epoll set first: the server (or, after a handover, the next
    // process) holds another descriptor of this socket, and epoll forgets a
    // socket only when its last descriptor closes.
    loop_.unwatch(l->fd.get());
    l->fd.reset();
    if (retired_.empty()) {
        loop_.defer([this] { retired_.clear(); });
    }
    retired_.push_back(std::move(l));
}

void worker::take(listener_changes changes, bool watch) {
    for (const auto& name : changes.close) {
        const auto [first, last] = listeners_.equal_range(name);
        for (auto it = first; it != last; ++it) {
            retire(std::move(it->second));
        }
        listeners_.erase(first, last);
    }
    for (auto& [name, fd] : changes.open) {
        auto entry = std::make_unique<listening>();
        entry->owner = this;
        entry->name = name;
        entry->fd = std::move(fd);
        // Level-triggered: connections left for the next turn are reported again.
        if (watch && accepting_) {
            if (const auto ec = loop_.watch(entry->fd.get(), EPOLLIN, entry.get())) {
                PATROXY_LOG(error, "proxy") << "listener '" << name << "': " << ec.message();
            }
        }
        listeners_.emplace(name, std::move(entry));
    }
}

void worker::start() {
    for (auto& [name, l] : listeners_) {
        if (const auto ec = loop_.watch(l->fd.get(), EPOLLIN, l.get())) {
            throw std::runtime_error("listener '" + name + "': " + ec.message());
        }
    }
    started_ = true;
    thread_ = std::thread([this] { loop_.run(); });
}

std::optional<std::size_t> worker::route_position(const std::string& name) const {
    for (std::size_t i = 0; i < routing_->listeners.size(); ++i) {
        if (routing_->listeners[i].cfg->name == name) {
            return i;
        }
    }
    return std::nullopt;
}

bool worker::has_room(const listener_route& route) const {
    // Past maxconn a few more are accepted to be told 53300 (no member
    // connection); past those, and at the process's ceiling, the kernel's
    // backlog holds them. Descriptors for checks, stats and VRRP stay free.
    return ceiling_.active.load(std::memory_order_relaxed) < ceiling_.limit.load(std::memory_order_relaxed) &&
           route.book->active.load(std::memory_order_relaxed) < route.cfg->maxconn + conf::refusal_slots;
}

void worker::accept_some(listening& l) {
    const auto at = route_position(l.name);
    if (!at) {
        return;  // closed by the routing that removed it, in this same batch
    }
    const auto& route = routing_->listeners[*at];
    for (int i = 0; i < accepts_per_turn && accepting_ && l.fd; ++i) {
        if (!has_room(route)) {
            return pause_accepting(l, full_back_off);
        }
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
                PATROXY_LOG(error, "proxy") << "accept on listener '" << l.name << "' failed: " << why.message()
                                            << " (retrying every " << accept_back_off.count() << " ms)";
            }
            return pause_accepting(l, accept_back_off);
        }
        peer.resize(len);
        ceiling_.active.fetch_add(1, std::memory_order_relaxed);
        const int active = count_in(route.book->active, route.book->peak);
        auto s = std::make_shared<session>(*this, routing_, *at, unique_fd(fd), peer);
        sessions_.emplace(s.get(), s);
        session_count_.store(sessions_.size(), std::memory_order_relaxed);
        s->start(active > route.cfg->maxconn);
    }
}

void worker::pause_accepting(listening& l, std::chrono::milliseconds after) {
    if (l.paused) {
        return;
    }
    l.paused = true;
    loop_.rewatch(l.fd.get(), 0, &l);
    loop_.deadlines().add(std::chrono::steady_clock::now() + after, [this, name = l.name] { resume_accepting(name); });
}

void worker::resume_accepting(const std::string& name) {
    const auto [first, last] = listeners_.equal_range(name);
    for (auto it = first; it != last; ++it) {
        auto& l = *it->second;
        if (!l.paused || !accepting_ || !l.fd) {
            continue;
        }
        l.paused = false;
        // Level-triggered: what waits in the backlog is reported at once.
        loop_.rewatch(l.fd.get(), EPOLLIN, &l);
    }
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
    for (auto& [name, l] : listeners_) {
        const auto at = route_position(name);
        if (l->paused && at && has_room(routing_->listeners[*at])) {
            resume_accepting(name);  // a session ended here: room for the next at once
        }
    }
}

void worker::post_routing(routing_ptr r, listener_changes changes, std::optional<drain_order> drain) {
    auto shared_changes = std::make_shared<listener_changes>(std::move(changes));
    loop_.post([this, r = std::move(r), shared_changes, drain = std::move(drain)]() mutable {
        // New sockets first, so that nothing a client sees goes dark in between.
        take(std::move(*shared_changes), true);
        if (drain) {
            // Before the routing: a session whose member leaves the set is
            // then draining, not one that lost its role (that would cut it).
            drain_now(*drain);
        }
        on_routing(std::move(r));
    });
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

void worker::on_routing(routing_ptr r) {
    routing_ = std::move(r);
    each_session([](session& s) { s.on_routing(); });
}

void worker::post_stop_accepting() {
    loop_.post([this] {
        accepting_ = false;
        for (auto& [name, l] : listeners_) {
            retire(std::move(l));
        }
        listeners_.clear();
    });
}

void worker::post_resume(listener_changes changes) {
    auto shared_changes = std::make_shared<listener_changes>(std::move(changes));
    loop_.post([this, shared_changes] {
        accepting_ = true;
        take(std::move(*shared_changes), true);
    });
}

void worker::post_drain(drain_order order) {
    loop_.post([this, order = std::move(order)] { drain_now(order); });
}

void worker::drain_now(const drain_order& order) {
    std::vector<std::pair<std::shared_ptr<session>, std::string>> chosen;
    for (const auto& [raw, s] : sessions_) {
        auto why = order.reason ? order.reason(*s) : order.why;
        if (!why.empty()) {
            chosen.emplace_back(s, std::move(why));
        }
    }
    // Spread the idle closes (Odyssey's drop rate, envoy#44419's reconnect
    // storms): the n-th waits n/count of the spread at least.
    const auto now = std::chrono::steady_clock::now();
    const auto n = static_cast<long long>(chosen.size());
    for (long long i = 0; i < n; ++i) {
        const auto not_before = now + order.spread * i / std::max<long long>(n, 1);
        auto& [s, why] = chosen[static_cast<std::size_t>(i)];
        s->drain(std::move(why), not_before, order.deadline, order.refuse_unrouted);
    }
}

void worker::post_close_all() {
    loop_.post([this] {
        each_session([](session& s) { s.close(close_reason::shutdown, "drain limit reached"); });
    });
}

void worker::post_describe(std::size_t limit, std::chrono::steady_clock::time_point now,
                           std::function<void(std::vector<session_view>)> reply) {
    loop_.post([this, limit, now, reply = std::move(reply)] {
        // The oldest first, chosen before anything is copied: only the kept
        // sessions' strings are.
        std::vector<const session*> oldest;
        oldest.reserve(sessions_.size());
        for (const auto& [raw, s] : sessions_) {
            oldest.push_back(raw);
        }
        const auto keep = std::min(limit, oldest.size());
        std::partial_sort(oldest.begin(), oldest.begin() + static_cast<std::ptrdiff_t>(keep), oldest.end(),
                          [](const session* a, const session* b) { return a->started_at() < b->started_at(); });
        std::vector<session_view> views;
        views.reserve(keep);
        for (std::size_t i = 0; i < keep; ++i) {
            views.push_back(oldest[i]->view(now));
        }
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
