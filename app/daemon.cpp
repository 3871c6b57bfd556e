#include "app/daemon.hpp"

#include "app/log.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <csignal>

namespace patroxy::app {

namespace {
health::topology_ptr empty_topology() { return std::make_shared<const health::topology>(); }
}  // namespace

daemon::daemon(conf::config cfg)
    : cfg_(std::move(cfg)),
      signals_(control_, SIGTERM, SIGINT),
      drain_timer_(control_),
      server_(cfg_, empty_topology()),
      monitor_(control_, cfg_, [this](health::topology_ptr t) { server_.publish(std::move(t)); }),
      vip_(control_, cfg_.vip, cfg_.stats.port, [this] { return unhealthy_reason(); }) {
    server_.trouble().set_sink([this](std::size_t member) {
        boost::asio::post(control_, [this, member] { monitor_.suspect(member); });
    });
    if (cfg_.stats.enabled) {
        stats_.emplace(
            control_, cfg_.stats, [this] { return collect(); },
            [this](std::size_t limit, std::function<void(std::vector<proxy::session_view>)> done) {
                server_.describe_sessions(limit, control_.get_executor(), std::move(done));
            });
    }
}

stats::status daemon::collect() const {
    stats::status s;
    s.cfg = &cfg_;
    s.topology = monitor_.latest();
    s.listeners = server_.totals();
    s.last_leader_change = monitor_.last_leader_change();
    s.leader_changes = monitor_.leader_changes();
    s.split_brain_events = monitor_.split_brain_events();
    s.process.started = started_;
    s.process.workers = server_.worker_count();
    s.process.config_file = cfg_.source;
    s.now = std::chrono::system_clock::now();
    s.vip = vip_.status();
    return s;
}

std::string daemon::unhealthy_reason() {
    const auto t = monitor_.latest();
    const auto now = std::chrono::steady_clock::now();
    if (t->leader) {
        leaderless_since_.reset();
        return {};
    }
    if (!leaderless_since_) {
        leaderless_since_ = now;
    }
    const auto for_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - *leaderless_since_);
    if (for_ms < cfg_.vip.unhealthy_after) {
        return {};
    }
    const bool none_answers = std::none_of(t->members.begin(), t->members.end(), [](const auto& m) { return m.up; });
    return std::string(none_answers ? "no Patroni API answers" : "no leader known") + " for " +
           std::to_string(for_ms.count() / 1000) + "s";
}

int daemon::run() {
    signals_.async_wait([this](boost::system::error_code ec, int signo) {
        if (!ec) {
            on_signal(signo);
        }
    });
    std::signal(SIGPIPE, SIG_IGN);
    server_.start();
    monitor_.start();
    vip_.start();
    if (stats_) {
        stats_->start();
        PATROXY_LOG(info, "main") << "stats on http://" << cfg_.stats.bind << ":" << cfg_.stats.port
                                  << "/ (/status.json, /metrics, /health)";
    }
    for (const auto& l : cfg_.listeners) {
        PATROXY_LOG(info, "main") << "listener '" << l.name << "' (" << conf::to_string(l.role) << ") on " << l.bind
                                  << ":" << l.port << ", maxconn " << l.maxconn;
    }
    PATROXY_LOG(info, "main") << "patroxy " PATROXY_VERSION " running: " << server_.worker_count() << " workers, "
                              << cfg_.members.size() << " members, scope " << cfg_.scope;
    control_.run();
    server_.stop();
    PATROXY_LOG(info, "main") << "stopped";
    return 0;
}

void daemon::on_signal(int signo) {
    if (draining_) {
        // A second signal: stop waiting for sessions.
        PATROXY_LOG(warn, "main") << "second signal: closing every session now";
        closing_ = true;
        server_.close_all();
    } else {
        draining_ = true;
        PATROXY_LOG(info, "main") << (signo == SIGINT ? "SIGINT" : "SIGTERM") << ": no new sessions; draining "
                                  << server_.session_count() << " session(s) for up to "
                                  << cfg_.timeouts.drain.count() << "ms";
        vip_.shutdown();  // hand the VIP over first: the backup takes it after Skew_Time
        monitor_.stop();
        if (stats_) {
            stats_->stop();
        }
        server_.stop_accepting();
        drain_deadline_ = std::chrono::steady_clock::now() + cfg_.timeouts.drain;
        drain_tick();
    }
    signals_.async_wait([this](boost::system::error_code ec, int s) {
        if (!ec) {
            on_signal(s);
        }
    });
}

void daemon::drain_tick() {
    const auto left = server_.session_count();
    if (left == 0) {
        signals_.cancel();
        control_.stop();
        return;
    }
    if (!closing_ && std::chrono::steady_clock::now() >= drain_deadline_) {
        PATROXY_LOG(warn, "main") << "drain limit reached: closing " << left << " session(s)";
        closing_ = true;
        server_.close_all();
    }
    drain_timer_.expires_after(std::chrono::milliseconds{50});
    drain_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            drain_tick();
        }
    });
}

}  // namespace patroxy::app
