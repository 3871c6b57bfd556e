#include "proxy/server.hpp"

#include "base/log.hpp"

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <utility>

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

std::runtime_error cannot_listen(const conf::listener_config& l, const std::string& why) {
    return std::runtime_error("listener '" + l.name + "' cannot listen on " + l.bind + ":" + std::to_string(l.port) +
                              ": " + why);
}

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
        throw cannot_listen(l, ec.message() + " (is another patroxy running?)");
    }
}

std::error_code enable(int fd, int level, int option) {
    const int on = 1;
    return ::setsockopt(fd, level, option, &on, sizeof on) == 0 ? std::error_code{} : last_errno();
}

unique_fd listening_socket(const conf::listener_config& l) {
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
        throw cannot_listen(l, ec.message());
    }
    return fd;
}

// Whether an inherited socket listens where `l` says.
bool listens_at(int fd, const conf::listener_config& l) {
    tcp::endpoint ep;
    auto len = static_cast<socklen_t>(ep.capacity());
    if (::getsockname(fd, ep.data(), &len) != 0) {
        return false;
    }
    ep.resize(len);
    error_code ec;
    const auto want = net::ip::make_address(l.bind, ec);
    return !ec && ep.address() == want && ep.port() == l.port;
}
}  // namespace

std::string server::address_of(const conf::listener_config& l) { return l.bind + ":" + std::to_string(l.port); }

server::server(conf::config_ptr cfg, topologies initial, inherited_sockets inherited)
    : cfg_(std::move(cfg)), topologies_(std::move(initial)), books_(proxy::worker_count(*cfg_)) {
    // The ceiling that leaves the reserved descriptors free at today's limit.
    rlimit lim{};
    const long nofile = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 ? static_cast<long>(lim.rlim_cur) : 1024;
    ceiling_.limit = static_cast<int>(conf::descriptors_for(*cfg_, proxy::worker_count(*cfg_)).sessions_within(nofile));
    for (const auto& l : cfg_->listeners) {
        auto& from = inherited[l.name];
        const bool usable = !from.empty() && std::all_of(from.begin(), from.end(), [&](const unique_fd& fd) {
            return listens_at(fd.get(), l);
        });
        if (usable) {
            socket_set set{l.name, {}};
            for (auto& fd : from) {
                set.fds.push_back(std::move(fd));
            }
            // Fewer than the workers: the rest bind beside them (SO_REUSEPORT, same user).
            while (set.fds.size() < proxy::worker_count(*cfg_)) {
                set.fds.push_back(listening_socket(l));
            }
            sockets_[address_of(l)] = std::move(set);
        } else {
            ensure_port_free(l);
            sockets_[address_of(l)] = open_set(l);
        }
    }
    reroute();
    const auto n = proxy::worker_count(*cfg_);
    for (std::size_t i = 0; i < n; ++i) {
        workers_.push_back(std::make_unique<worker>(i, ceiling_, cancels_, trouble_, routing_));
    }
    auto dealt = deal_all();
    for (std::size_t i = 0; i < n; ++i) {
        workers_[i]->adopt(std::move(dealt[i]));
    }
}

server::~server() { stop(); }

server::socket_set server::open_set(const conf::listener_config& l) {
    socket_set set{l.name, {}};
    for (std::size_t i = 0; i < proxy::worker_count(*cfg_); ++i) {
        set.fds.push_back(listening_socket(l));
    }
    return set;
}

void server::deal(const socket_set& set, std::vector<listener_changes>& into) {
    for (std::size_t i = 0; i < set.fds.size(); ++i) {
        const int copy = ::fcntl(set.fds[i].get(), F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
            PATROXY_LOG(error, "proxy") << "listener '" << set.listener << "': " << last_errno().message();
            continue;
        }
        into[i % into.size()].open.emplace_back(set.listener, unique_fd(copy));
    }
}

std::vector<listener_changes> server::deal_all() const {
    std::vector<listener_changes> out(workers_.size());
    for (const auto& [address, set] : sockets_) {
        deal(set, out);
    }
    return out;
}

void server::start() {
    for (auto& w : workers_) {
        w->start();
    }
}

void server::reroute() {
    std::vector<health::topology_ptr> aligned;
    for (std::size_t i = 0; i < cfg_->cluster_count(); ++i) {
        const auto it = topologies_.find(cfg_->cluster_label(i));
        aligned.push_back(it == topologies_.end() ? nullptr : it->second);
    }
    routing_ = make_routing(cfg_, aligned, books_);
}

void server::publish(const std::string& cluster, health::topology_ptr t) {
    topologies_[cluster] = std::move(t);
    reroute();
    const auto drain = std::exchange(pending_drain_, std::nullopt);
    for (auto& w : workers_) {
        w->post_routing(routing_, {}, drain);
    }
}

std::optional<std::string> server::prepare(const conf::config& cfg) {
    // Bind what is new before anything changes: a port in use fails the whole reload.
    prepared_.clear();
    try {
        for (const auto& l : cfg.listeners) {
            const auto address = address_of(l);
            if (sockets_.count(address) == 0 && prepared_.count(address) == 0) {
                ensure_port_free(l);
                prepared_[address] = open_set(l);
            }
        }
    } catch (const std::exception& e) {
        prepared_.clear();  // closes what it bound
        return std::string(e.what());
    }
    return std::nullopt;
}

void server::apply(conf::config_ptr cfg, topologies fresh) {
    for (auto& [label, t] : fresh) {
        topologies_[label] = std::move(t);  // built for the new listeners (their classes)
    }
    auto opened = std::move(prepared_);
    prepared_.clear();
    std::vector<listener_changes> changes(workers_.size());
    const auto close_everywhere = [&](const std::string& listener) {
        for (auto& c : changes) {
            c.close.push_back(listener);
        }
    };
    // Sockets no listener uses any more close; those that serve under a new name move.
    std::map<std::string, socket_set> kept;
    for (auto& [address, set] : sockets_) {
        const auto it = std::find_if(cfg->listeners.begin(), cfg->listeners.end(),
                                     [&](const conf::listener_config& l) { return address_of(l) == address; });
        if (it == cfg->listeners.end()) {
            PATROXY_LOG(info, "proxy") << "listener '" << set.listener << "' on " << address << " removed: closed";
            close_everywhere(set.listener);
            continue;
        }
        if (it->name != set.listener) {
            close_everywhere(set.listener);
            set.listener = it->name;
            deal(set, changes);
        }
        kept[address] = std::move(set);
    }
    // A listener whose address changed: its old socket closed above, the new one here.
    for (auto& [address, set] : opened) {
        PATROXY_LOG(info, "proxy") << "listener '" << set.listener << "' on " << address << " bound";
        deal(set, changes);
        kept[address] = std::move(set);
    }
    sockets_ = std::move(kept);
    cfg_ = std::move(cfg);
    std::erase_if(topologies_, [&](const auto& kv) { return !cfg_->cluster_index(kv.first); });
    reroute();
    const auto drain = std::exchange(pending_drain_, std::nullopt);
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        workers_[i]->post_routing(routing_, std::move(changes[i]), drain);
    }
}

void server::stop_accepting() {
    for (auto& w : workers_) {
        w->post_stop_accepting();
    }
    sockets_.clear();  // with the workers' copies gone, the ports close
}

void server::pause_for_handover() {
    for (auto& w : workers_) {
        w->post_stop_accepting();
    }
}

void server::resume_after_handover() {
    auto dealt = deal_all();
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        workers_[i]->post_resume(std::move(dealt[i]));
    }
}

void server::release_sockets() { sockets_.clear(); }

std::vector<std::pair<std::string, int>> server::sockets() const {
    std::vector<std::pair<std::string, int>> out;
    for (const auto& [address, set] : sockets_) {
        for (const auto& fd : set.fds) {
            out.emplace_back(set.listener, fd.get());
        }
    }
    return out;
}

void server::drain(const drain_order& order) {
    for (auto& w : workers_) {
        w->post_drain(order);
    }
}

void server::drain_with_next_routing(drain_order order) { pending_drain_ = std::move(order); }

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
    const auto now = std::chrono::steady_clock::now();
    for (auto& w : workers_) {
        w->post_describe(limit, now, [g, reply_on](std::vector<session_view> part) {
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
