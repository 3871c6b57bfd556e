#include "proxy/server.hpp"

#include <thread>

namespace patroxy::proxy {

std::size_t worker_count(const conf::config& cfg) {
    if (cfg.workers > 0) {
        return static_cast<std::size_t>(cfg.workers);
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
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
    if (!ec) {
        probe.bind(ep, ec);
    }
    if (ec) {
        throw std::runtime_error("listener '" + l.name + "' cannot listen on " + l.bind + ":" + std::to_string(l.port) +
                                 ": " + ec.message() + " (is another patroxy running?)");
    }
}
}  // namespace

server::server(const conf::config& cfg, health::topology_ptr initial) : slots_(cfg.listeners.size()) {
    for (const auto& l : cfg.listeners) {
        ensure_port_free(l);
    }
    const auto n = proxy::worker_count(cfg);
    for (std::size_t i = 0; i < n; ++i) {
        workers_.push_back(std::make_unique<worker>(i, cfg, slots_, initial));
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

void server::stop() {
    for (auto& w : workers_) {
        w->stop();
    }
}

}  // namespace patroxy::proxy
