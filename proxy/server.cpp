#include "proxy/server.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <thread>

namespace patroxy::proxy {

std::size_t worker_count(const conf::config& cfg) {
    if (cfg.workers > 0) {
        return static_cast<std::size_t>(cfg.workers);
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
// Boost 1.74 has no option for it: IP_FREEBIND lets a listener bind a VIP that
// is not on this host yet (no net.ipv4.ip_nonlocal_bind needed).
using free_bind = net::detail::socket_option::boolean<IPPROTO_IP, IP_FREEBIND>;

// SO_REUSEPORT would let a second patroxy (or anything of the same user) bind
// our ports and silently take half the connections. A plain bind first fails
// if anyone already listens there.
void ensure_port_free(const conf::listener_config& l) {
    net::io_context ioc;
    tcp::acceptor probe(ioc);
    const tcp::endpoint ep(net::ip::make_address(l.bind), l.port);
    error_code ec;
    probe.open(ep.protocol(), ec);
    if (!ec) {
        probe.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec && ep.address().is_v4()) {
        probe.set_option(free_bind(true), ec);  // the VIP may be on the other host now
    }
    if (!ec) {
        probe.bind(ep, ec);
    }
    if (ec) {
        throw std::runtime_error("listener '" + l.name + "' cannot listen on " + l.bind + ":" + std::to_string(l.port) +
                                 ": " + ec.message() + " (is another patroxy running?)");
    }
}
}  // namespace

server::server(const conf::config& cfg, health::topology_ptr initial)
    : cfg_(cfg), slots_(cfg.listeners.size()), trouble_(cfg.members.size()) {
    for (auto& s : slots_) {
        s.members = std::make_unique<listener_slots::member_slot[]>(cfg.members.size());
    }
    for (const auto& l : cfg.listeners) {
        ensure_port_free(l);
    }
    const auto n = proxy::worker_count(cfg);
    for (std::size_t i = 0; i < n; ++i) {
        workers_.push_back(std::make_unique<worker>(cfg, slots_, cancels_, trouble_, initial));
        workers_.back()->open_listeners();
    }
}

server::~server() { stop(); }

void server::start() {
    for (auto& w : workers_) {
        w->start();
    }
}

void server::publish(health::topology_ptr t) {
    for (auto& w : workers_) {
        w->post_topology(t);
    }
}

void server::stop_accepting() {
    for (auto& w : workers_) {
        w->post_stop_accepting();
    }
}

void server::close_all() {
    for (auto& w : workers_) {
        w->post_close_all();
    }
}

std::size_t server::session_count() const {
    std::size_t n = 0;
    for (const auto& w : workers_) {
        n += w->session_count();
    }
    return n;
}

std::vector<listener_totals> server::totals() const {
    std::vector<listener_totals> out(cfg_.listeners.size());
    for (std::size_t l = 0; l < out.size(); ++l) {
        auto& t = out[l];
        t.members.resize(cfg_.members.size());
        t.peak = static_cast<std::uint64_t>(slots_[l].peak.load(std::memory_order_relaxed));
        for (const auto& w : workers_) {
            const auto& c = w->counters().listener(l);
            t.accepted += read(c.accepted);
            t.current += read(c.current);
            t.held += read(c.held);
            t.bytes_in += read(c.bytes_in);
            t.bytes_out += read(c.bytes_out);
            for (std::size_t r = 0; r < close_reason_count; ++r) {
                t.closed[r] += read(c.closed[r]);
            }
            for (std::size_t m = 0; m < t.members.size(); ++m) {
                const auto& mc = w->counters().member(l, m);
                t.members[m].current += read(mc.current);
                t.members[m].peak = static_cast<std::uint64_t>(slots_[l].members[m].peak.load(std::memory_order_relaxed));
                t.members[m].total += read(mc.total);
                t.members[m].connect_errors += read(mc.connect_errors);
                t.members[m].bytes_in += read(mc.bytes_in);
                t.members[m].bytes_out += read(mc.bytes_out);
            }
        }
    }
    return out;
}

void server::describe_sessions(std::size_t limit, net::any_io_executor reply_on,
                               std::function<void(std::vector<session_view>)> done) {
    struct gather {
        std::vector<session_view> views;
        std::size_t waiting;
        std::size_t limit;
        std::function<void(std::vector<session_view>)> done;
    };
    auto g = std::make_shared<gather>(gather{{}, workers_.size(), limit, std::move(done)});
    if (g->waiting == 0) {
        return net::post(reply_on, [g] { g->done({}); });
    }
    for (auto& w : workers_) {
        w->post_describe(limit, [g, reply_on](std::vector<session_view> part) {
            // Back on the caller's executor: only that thread touches `g`.
            net::post(reply_on, [g, part = std::move(part)]() mutable {
                g->views.insert(g->views.end(), std::make_move_iterator(part.begin()),
                                std::make_move_iterator(part.end()));
                if (--g->waiting == 0) {
                    std::sort(g->views.begin(), g->views.end(), runs_longer);
                    if (g->views.size() > g->limit) {
                        g->views.resize(g->limit);
                    }
                    g->done(std::move(g->views));
                }
            });
        });
    }
}

void server::stop() {
    for (auto& w : workers_) {
        w->stop();
    }
}

}  // namespace patroxy::proxy
