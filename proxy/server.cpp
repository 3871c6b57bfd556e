#include "proxy/server.hpp"

#include <thread>

namespace patroxy::proxy {

std::size_t worker_count(const conf::config& cfg) {
    if (cfg.workers > 0) {
        return static_cast<std::size_t>(cfg.workers);
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

server::server(const conf::config& cfg, health::topology_ptr initial) : slots_(cfg.listeners.size()) {
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
