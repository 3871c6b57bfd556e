#include "proxy/worker.hpp"

#include "app/log.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

#include <netinet/in.h>

namespace patroxy::proxy {

worker::worker(const conf::config& cfg, std::vector<listener_slots>& slots, cancel_registry& cancels,
               trouble_reporter& trouble, health::topology_ptr initial)
    : cfg_(cfg),
      slots_(slots),
      cancels_(cancels),
      trouble_(trouble),
      counters_(cfg.listeners.size(), cfg.members.size()),
      work_(net::make_work_guard(ioc_)),
      topology_(std::move(initial)) {
    for (const auto& m : cfg.members) {
        member_endpoints_.emplace_back(net::ip::make_address(m.host), m.port);
    }
}

worker::~worker() { stop(); }

void worker::open_listeners() {
    for (const auto& l : cfg_.listeners) {
        const tcp::endpoint ep(net::ip::make_address(l.bind), l.port);
        auto acceptor = std::make_unique<tcp::acceptor>(ioc_);
        error_code ec;
        acceptor->open(ep.protocol(), ec);
        if (!ec) {
            acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
        }
        if (!ec) {
            acceptor->set_option(reuse_port(true), ec);
        }
        if (!ec && ep.address().is_v4()) {
            acceptor->set_option(free_bind(true), ec);
        }
        // Accepted sockets inherit these: no two setsockopt calls per client.
        if (!ec) {
            acceptor->set_option(tcp::no_delay(true), ec);
        }
        if (!ec) {
            acceptor->set_option(net::socket_base::keep_alive(true), ec);
        }
        if (!ec) {
            acceptor->bind(ep, ec);
        }
        if (!ec) {
            acceptor->listen(net::socket_base::max_listen_connections, ec);
        }
        if (ec) {
            throw std::runtime_error("listener '" + l.name + "' cannot listen on " + l.bind + ":" +
                                     std::to_string(l.port) + ": " + ec.message());
        }
        acceptors_.push_back(std::move(acceptor));
        peers_.emplace_back();
        accept_retry_.push_back(std::make_unique<net::steady_timer>(ioc_));
    }
}

void worker::start() {
    for (std::size_t l = 0; l < acceptors_.size(); ++l) {
        do_accept(l);
    }
    thread_ = std::thread([this] { ioc_.run(); });
}

void worker::do_accept(std::size_t listener) {
    if (!accepting_) {
        return;
    }
    // The peer address comes with accept itself (no getpeername per session).
    acceptors_[listener]->async_accept(ioc_, peers_[listener], [this, listener](error_code ec, tcp::socket socket) {
        on_accept(listener, ec, std::move(socket));
    });
}

void worker::on_accept(std::size_t listener, error_code ec, tcp::socket socket) {
    if (!accepting_ || ec == net::error::operation_aborted) {
        return;
    }
    if (ec) {
        // Out of descriptors or memory: back off briefly instead of spinning.
        PATROXY_LOG(error, "proxy") << "accept on listener '" << cfg_.listeners[listener].name
                                    << "' failed: " << ec.message();
        accept_retry_[listener]->expires_after(std::chrono::milliseconds{100});
        accept_retry_[listener]->async_wait([this, listener](error_code wait_ec) {
            if (!wait_ec) {
                do_accept(listener);
            }
        });
        return;
    }
    const int active = count_in(slots_[listener].active, slots_[listener].peak);
    auto s = std::make_shared<session>(*this, listener, std::move(socket), peers_[listener]);
    s->start(active > cfg_.listeners[listener].maxconn);
    do_accept(listener);
}

void worker::add(session* s) {
    sessions_.insert(s);
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void worker::remove(session* s) {
    if (sessions_.erase(s) != 0) {
        session_count_.store(sessions_.size(), std::memory_order_relaxed);
    }
}

void worker::post_topology(health::topology_ptr t) {
    net::post(ioc_, [this, t = std::move(t)]() mutable { on_topology(std::move(t)); });
}

void worker::each_session(const std::function<void(session&)>& act) {
    // A session may close (and leave the set) while we walk it: walk a copy.
    const std::vector<session*> now(sessions_.begin(), sessions_.end());
    for (auto* s : now) {
        if (sessions_.count(s) != 0) {
            const auto keep = s->shared_from_this();  // its deadline may hold the last reference
            act(*s);
        }
    }
}

void worker::on_topology(health::topology_ptr t) {
    topology_ = std::move(t);
    each_session([](session& s) { s.on_topology(); });
}

void worker::post_stop_accepting() {
    net::post(ioc_, [this] {
        accepting_ = false;
        for (auto& a : acceptors_) {
            error_code ignored;
            a->close(ignored);
        }
        for (auto& t : accept_retry_) {
            t->cancel();
        }
        each_session([](session& s) { s.refuse_if_waiting(); });
    });
}

void worker::post_close_all() {
    net::post(ioc_, [this] {
        each_session([](session& s) { s.close(close_reason::shutdown, "drain limit reached"); });
    });
}

void worker::post_describe(std::size_t limit, std::function<void(std::vector<session_view>)> reply) {
    net::post(ioc_, [this, limit, reply = std::move(reply)] {
        const auto now = std::chrono::steady_clock::now();
        std::vector<session_view> views;
        views.reserve(sessions_.size());
        for (const auto* s : sessions_) {
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
        work_.reset();
        ioc_.stop();
        thread_.join();
    }
}

}  // namespace patroxy::proxy
