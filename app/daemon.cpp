#include "app/daemon.hpp"

#include "base/log.hpp"
#include "conf/loader.hpp"

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <future>
#include <set>
#include <utility>

namespace patroxy::app {

namespace {

log::level to_log_level(conf::log_level l) {
    switch (l) {
    case conf::log_level::debug: return log::level::debug;
    case conf::log_level::info: return log::level::info;
    case conf::log_level::warn: return log::level::warn;
    case conf::log_level::error: return log::level::error;
    }
    return log::level::info;
}

// header[object][field] as text, "" when either is missing or not what is
// expected: a header from another version must not throw (json::value()
// throws on a value that is not an object).
std::string text_at(const nlohmann::json& header, std::string_view object, std::string_view field) {
    const auto* where = &header;
    if (!object.empty()) {
        const auto it = header.find(object);
        if (it == header.end()) {
            return {};
        }
        where = &*it;
    }
    if (!where->is_object()) {
        return {};
    }
    const auto it = where->find(field);
    return it != where->end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Closes every descriptor from `first` on, in a child between fork and exec
// (async-signal-safe calls only: no opendir, no malloc).
void close_descriptors_from(int first) {
    if (::close_range(static_cast<unsigned>(first), ~0U, 0) == 0) {
        return;
    }
    // Kernels before 5.9: what /proc/self/fd lists, read with getdents64,
    // again until a pass closes nothing (closing while listing may skip some).
    const int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        for (int fd = first; fd < 65536; ++fd) {
            ::close(fd);
        }
        return;
    }
    for (bool closed_some = true; closed_some;) {
        closed_some = false;
        ::lseek(dir, 0, SEEK_SET);
        alignas(8) char buf[4096];
        for (long n; (n = ::syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0;) {
            for (long at = 0; at < n;) {
                // struct linux_dirent64: u64 d_ino | s64 d_off | u16 d_reclen | u8 d_type | d_name
                unsigned short reclen = 0;
                std::memcpy(&reclen, buf + at + 16, sizeof reclen);
                const char* c = buf + at + 19;
                if (reclen == 0) {
                    break;
                }
                at += reclen;
                int fd = 0;
                if (*c < '0' || *c > '9') {
                    continue;  // "." and ".."
                }
                for (; *c >= '0' && *c <= '9'; ++c) {
                    fd = fd * 10 + (*c - '0');
                }
                if (fd >= first && fd != dir) {
                    ::close(fd);
                    closed_some = true;
                }
            }
        }
    }
    ::close(dir);
}

int int_at(const nlohmann::json& header, std::string_view object, std::string_view field) {
    const auto it = header.find(object);
    if (it == header.end() || !it->is_object()) {
        return 0;
    }
    const auto f = it->find(field);
    return f != it->end() && f->is_number_integer() ? f->get<int>() : 0;
}

// The VRRP state the previous process handed over. An older one names only
// the state: it is taken to be about our own instance, as those versions did.
vip::vrrp_handover handed_vrrp(const nlohmann::json& header, const conf::vip_config& ours) {
    vip::vrrp_handover h;
    h.state = text_at(header, "vrrp", "state") == "master" ? vip::vrrp_state::master : vip::vrrp_state::backup;
    if (text_at(header, "vrrp", "interface").empty()) {
        h.interface = ours.interface;
        h.address = ours.address;
        h.prefix = ours.prefix;
        h.virtual_router_id = ours.virtual_router_id;
        return h;
    }
    h.interface = text_at(header, "vrrp", "interface");
    h.address = text_at(header, "vrrp", "address");
    h.prefix = int_at(header, "vrrp", "prefix");
    h.virtual_router_id = int_at(header, "vrrp", "vrid");
    return h;
}

}  // namespace

std::optional<received_handover> daemon::take_over(const conf::config& cfg, const daemon_options& o) {
    if (!o.upgrade) {
        return std::nullopt;
    }
    std::string why;
    auto got = cfg.control_socket.empty() ? std::nullopt : request_handover(cfg.control_socket, why);
    if (!got) {
        PATROXY_LOG(warn, "upgrade") << (cfg.control_socket.empty() ? std::string("no control_socket configured")
                                                                     : why)
                                     << ": starting afresh";
        return std::nullopt;
    }
    PATROXY_LOG(info, "upgrade") << "took " << got->fds.size() << " listening sockets from the running patroxy";
    return got;
}

proxy::inherited_sockets daemon::inherited_listeners(std::optional<received_handover>& from) {
    proxy::inherited_sockets out;
    if (!from) {
        return out;
    }
    const auto& sockets = from->header["sockets"];
    for (std::size_t i = 0; i < sockets.size() && i < from->fds.size(); ++i) {
        if (text_at(sockets[i], "", "kind") == "listener" && from->fds[i]) {
            out[text_at(sockets[i], "", "name")].push_back(std::move(from->fds[i]));
        }
    }
    return out;
}

std::optional<int> daemon::inherited_socket(std::optional<received_handover>& from, std::string_view kind) {
    if (!from) {
        return std::nullopt;
    }
    const auto& sockets = from->header["sockets"];
    for (std::size_t i = 0; i < sockets.size() && i < from->fds.size(); ++i) {
        if (text_at(sockets[i], "", "kind") == kind && from->fds[i]) {
            return from->fds[i].release();
        }
    }
    return std::nullopt;
}

daemon::daemon(conf::config_ptr cfg, daemon_options options)
    : options_(std::move(options)),
      cfg_(std::move(cfg)),
      current_(cfg_),
      handover_(take_over(*cfg_, options_)),
      signals_(control_),
      drain_timer_(control_),
      limit_timer_(control_),
      clusters_(watch_clusters()),
      server_(cfg_, latest_topologies(), inherited_listeners(handover_)),
      vip_(control_, cfg_->vip, cfg_->stats.port, [this] { return unhealthy_reason(); }),
      notify_(control_, {[this] { return first_round_in(); }, [this] { return status_line(); }}) {
    log::set_level(to_log_level(cfg_->log.level));
    server_ready_ = true;
    server_.trouble().set_sink([this](health::member_id member) {
        boost::asio::post(control_, [this, member] {
            for (auto& c : clusters_) {
                c.monitor->suspect(member);  // only its own cluster's knows the id
            }
        });
    });
    if (handover_ && handover_->header["members"].is_object()) {
        // What the previous process knew: routing goes on before our first checks.
        for (const auto& [name, body] : handover_->header["members"].items()) {
            if (!body.is_string()) {
                continue;
            }
            for (std::size_t i = 0; i < clusters_.size(); ++i) {
                const auto prefix = handover_name(i, *clusters_[i].label, "");
                if (i == 0 ? name.find('/') == std::string::npos : name.rfind(prefix, 0) == 0) {
                    clusters_[i].monitor->seed(name.substr(prefix.size()), body.get<std::string>());
                }
            }
        }
    }
    if (cfg_->stats.enabled) {
        stats_.emplace(
            stats_ioc_, cfg_->stats, [this] { return collect(); },
            [this](std::size_t limit, std::function<void(std::vector<proxy::session_view>)> done) {
                server_.describe_sessions(limit, stats_ioc_.get_executor(), std::move(done));
            },
            inherited_socket(handover_, "stats"));
    }
    if (!cfg_->control_socket.empty()) {
        try {
            control_server_.emplace(control_, cfg_->control_socket,
                                    control_server::handler{[this] { return prepare_handover(); },
                                                            [this](bool taken, bool adopted) {
                                                                handover_done(taken, adopted);
                                                            }},
                                    inherited_socket(handover_, "control"));
        } catch (const std::exception& e) {
            PATROXY_LOG(error, "upgrade") << e.what() << ": running without binary upgrades (reloads work)";
        }
    }
    reload_.generation = cfg_->generation;
}

daemon::~daemon() {
    stats_ioc_.stop();
    if (stats_thread_.joinable()) {
        stats_thread_.join();
    }
}

void daemon::run_contained(boost::asio::io_context& ioc, std::string_view name) {
    for (;;) {
        try {
            ioc.run();
            return;
        } catch (const std::exception& e) {
            PATROXY_LOG(error, "main") << name << " thread: " << e.what() << " (contained; running on)";
        }
    }
}

stats::status daemon::collect() const {
    stats::status s;
    {
        const std::lock_guard lock(clusters_mutex_);  // a reload may add or remove clusters meanwhile
        s.cfg = current_.load();
        for (const auto& c : clusters_) {
            s.clusters.push_back({*c.label, c.monitor->latest(), c.monitor->last_leader_change(),
                                  c.monitor->leader_changes(), c.monitor->split_brain_events(), c.monitor->dcs()});
        }
    }
    const auto& first = s.clusters.front();
    s.topology = first.topology;
    s.listeners = server_.totals();
    s.last_leader_change = first.last_leader_change;
    s.leader_changes = first.leader_changes;
    s.split_brain_events = first.split_brain_events;
    s.dcs = first.dcs;
    s.process.started = started_;
    s.process.workers = server_.worker_count();
    s.process.pid = ::getpid();
    s.process.config_file = s.cfg->source;
    {
        const std::lock_guard lock(reload_mutex_);
        s.process.reload = reload_;
    }
    s.process.connections = server_.connections();
    s.process.connection_limit = server_.connection_limit();
    rlimit lim{};
    s.process.descriptor_limit = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 ? static_cast<long>(lim.rlim_cur) : 0;
    s.process.log_dropped = log::dropped();
    s.now = std::chrono::system_clock::now();
    s.vip = vip_.status();
    return s;
}

void daemon::watch_descriptor_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        // The configuration (a reload) moves the budget too; only a new limit is news.
        const auto budget = conf::descriptors_for(*cfg_, server_.worker_count());
        const auto limit = static_cast<int>(budget.sessions_within(static_cast<long>(lim.rlim_cur)));
        if (limit != server_.connection_limit()) {
            if (lim.rlim_cur != nofile_seen_ && nofile_seen_ != 0) {
                PATROXY_LOG(warn, "main") << "descriptor limit now " << lim.rlim_cur << ": accepting pauses at "
                                          << limit << " connections (was " << server_.connection_limit() << "), "
                                          << budget.reserved << " descriptors kept for checks, stats and VRRP";
            }
            server_.set_connection_limit(limit);
        }
        nofile_seen_ = lim.rlim_cur;
    }
    limit_timer_.expires_after(std::chrono::seconds(1));
    limit_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            watch_descriptor_limit();
        }
    });
}

int daemon::run() {
    if (options_.handle_signals) {
        signals_.add(SIGTERM);
        signals_.add(SIGINT);
        signals_.add(SIGHUP);
        signals_.add(SIGUSR2);
        wait_for_signal();
        std::signal(SIGPIPE, SIG_IGN);
    }
    // The VRRP master state is adopted only for the same instance and VIP,
    // enabled here and able to run; otherwise the previous process removes
    // the VIP before it goes (it learns which with our TAKEN).
    std::optional<vip::vrrp_handover> adopt;
    if (handover_) {
        const auto offered = handed_vrrp(handover_->header, cfg_->vip);
        if (vip_.adoptable(offered)) {
            adopt = offered;
        } else if (offered.state == vip::vrrp_state::master) {
            PATROXY_LOG(warn, "upgrade") << "the previous process was VRRP master of " << offered.address << "/"
                                         << offered.prefix << " (vrid " << offered.virtual_router_id << " on "
                                         << offered.interface << "), which this configuration does not take over"
                                         << " as it is: it removes that VIP";
        }
    }
    if (handover_) {
        // Nothing has started yet: the previous process lets go on our TAKEN
        // and we start on its OK. Without the OK it keeps serving, so we
        // leave the VIP and the sockets alone and exit (app/handover.hpp).
        const bool acknowledged = handover_->confirm(adopt.has_value());
        handover_.reset();
        took_over_ = acknowledged;
        if (!acknowledged) {
            PATROXY_LOG(error, "upgrade") << "the running patroxy did not acknowledge the handover (it gave up "
                                             "waiting, or is gone): it keeps the sockets and the VIP; exiting";
            return 1;
        }
        PATROXY_LOG(info, "upgrade") << "the previous process lets go: starting";
    }
    server_.start();
    for (auto& c : clusters_) {
        c.monitor->start();
    }
    vip_.start(adopt);
    watch_descriptor_limit();
    if (stats_) {
        stats_->start();
        stats_thread_ = std::thread([this] {
            // Below the control thread and the workers: a flood on :7000 gets what CPU is left.
            ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
            run_contained(stats_ioc_, "stats");
        });
        PATROXY_LOG(info, "main") << "stats on http://" << cfg_->stats.bind << ":" << stats_->port()
                                  << "/ (/status.json, /metrics, /health)";
    }
    if (control_server_) {
        control_server_->start();
    }
    for (const auto& l : cfg_->listeners) {
        PATROXY_LOG(info, "main") << "listener '" << l.name << "' (" << conf::to_string(l.role) << ") on " << l.bind
                                  << ":" << l.port << ", maxconn " << l.maxconn;
    }
    for (std::size_t i = 0; i < cfg_->cluster_count(); ++i) {
        PATROXY_LOG(info, "main") << "cluster '" << cfg_->cluster_label(i) << "': scope " << cfg_->cluster(i).scope << ", "
                                  << cfg_->members_of(i).size() << " members in the file"
                                  << (cfg_->cluster(i).dcs.enabled ? ", the rest from the DCS" : "");
    }
    PATROXY_LOG(info, "main") << "patroxy " PATROXY_VERSION " running: " << server_.worker_count() << " workers, "
                              << cfg_->cluster_count() << " cluster(s)";
    // The listeners are bound; READY=1 once every member was checked once,
    // or after a bounded wait (a member whose API hangs must not hold the
    // start past what one check may take).
    auto check_timeout = cfg_->health.timeout;
    for (std::size_t i = 1; i < cfg_->cluster_count(); ++i) {
        check_timeout = std::max(check_timeout, cfg_->health_of(i).timeout);
    }
    notify_.start(check_timeout + std::chrono::seconds(1), took_over_);
    run_contained(control_, "control");
    stats_ioc_.stop();
    if (stats_thread_.joinable()) {
        stats_thread_.join();
    }
    server_.stop();
    PATROXY_LOG(info, "main") << "stopped";
    return 0;
}

bool daemon::on_control(const std::function<void()>& fn, std::chrono::milliseconds limit) {
    auto done = std::make_shared<std::promise<void>>();
    auto ready = done->get_future();
    boost::asio::post(control_, [fn, done] {
        fn();
        done->set_value();
    });
    return ready.wait_for(limit) == std::future_status::ready;
}

void daemon::request_reload() {
    boost::asio::post(control_, [this] { reload_file(); });
}

void daemon::request_shutdown() {
    boost::asio::post(control_, [this] { on_signal(SIGTERM); });
}

void daemon::stop_now() {
    boost::asio::post(control_, [this] {
        vip_.shutdown();
        stop_monitors();
        if (control_server_) {
            control_server_->stop(true);
        }
        if (stats_) {
            boost::asio::post(stats_ioc_, [this] { stats_->stop(); });
        }
        server_.stop_accepting();
        server_.close_all();
        notify_.stop();
        control_.stop();
    });
}

void daemon::wait_for_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        // Armed again first: whatever becomes of this signal (a reload that
        // runs out of memory), the next one is still handled.
        wait_for_signal();
        try {
            on_signal(signo);
        } catch (const std::exception& e) {
            PATROXY_LOG(error, "main") << "signal " << signo << ": " << e.what() << " (contained; signals handled on)";
        }
    });
}

void daemon::on_signal(int signo) {
    if (signo == SIGHUP) {
        return reload_file();
    }
    if (signo == SIGUSR2) {
        return spawn_next();
    }
    if (draining_) {
        // A second signal: stop waiting for sessions.
        PATROXY_LOG(warn, "main") << "second signal: closing every session now";
        closing_ = true;
        server_.close_all();
        return;
    }
    PATROXY_LOG(info, "main") << (signo == SIGINT ? "SIGINT" : "SIGTERM") << ": no new sessions; draining "
                              << server_.session_count() << " session(s) for up to " << cfg_->timeouts.drain.count()
                              << "ms";
    begin_drain("patroxy is shutting down", true);
}

// Phase one of a stop: hand the VIP over first (the backup takes it after
// Skew_Time), close the ports, then close sessions where they are idle.
void daemon::begin_drain(std::string why, bool resign_vip) {
    draining_ = true;
    if (resign_vip) {
        notify_.stopping(cfg_->timeouts.drain);
    } else {
        // The service goes on in the next process (it sent MAINPID=): this
        // one's exit is not the service's stop.
        notify_.handed_over("handed over to the next process; draining " + std::to_string(server_.session_count()) +
                            " session(s)");
    }
    if (resign_vip) {
        vip_.shutdown();
    }
    const bool mid_handover = std::exchange(handing_over_, false);
    if (mid_handover && resign_vip) {
        // A shutdown while a next process holds our sockets: the exchange
        // ends here without its OK, so that process exits; the VIP we handed
        // it would be nobody's.
        PATROXY_LOG(warn, "upgrade") << "shutting down during a binary upgrade: the next process is not told OK";
        vip_.release_handed_over(vip_handed_);
    }
    limit_timer_.cancel();
    if (control_server_) {
        // After (or during) a handover the next process has this very
        // socket and may listen at the path (an older one does before its
        // TAKEN): the path is not ours to remove then.
        control_server_->stop(resign_vip && !mid_handover);
    }
    if (stats_) {
        boost::asio::post(stats_ioc_, [this] { stats_->stop(); });
    }
    server_.stop_accepting();
    drain_deadline_ = std::chrono::steady_clock::now() + cfg_->timeouts.drain;
    server_.drain({std::move(why), cfg_->timeouts.drain / 2, drain_deadline_, {}, resign_vip});
    drain_tick();
}

void daemon::drain_tick() {
    const auto left = server_.session_count();
    if (left == 0) {
        stop_monitors();
        signals_.cancel();
        control_.stop();
        return;
    }
    // Sessions past the deadline close themselves; a little later, whatever is left goes.
    if (!closing_ && std::chrono::steady_clock::now() >= drain_deadline_ + std::chrono::seconds(1)) {
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

void daemon::record(const reload_result& r) {
    const std::lock_guard lock(reload_mutex_);
    reload_.last_at = std::chrono::system_clock::now();
    reload_.last_result = r.applied ? "ok" : "failed";
    reload_.last_errors = r.errors;
    reload_.restart_needed = r.restart_needed;
    reload_.generation = cfg_->generation;
    (r.applied ? reload_.ok_total : reload_.failed_total) += 1;
}

void daemon::reload_file() {
    if (draining_) {
        return;
    }
    if (handing_over_) {
        // The next process got this configuration's sockets and state a
        // moment ago: a reload now would change what it is taking over.
        PATROXY_LOG(warn, "main") << "SIGHUP: a binary upgrade is in progress; reload refused (send it to the "
                                     "process that serves once the upgrade is done)";
        return;
    }
    PATROXY_LOG(info, "main") << "SIGHUP: reloading " << cfg_->source;
    notify_.reloading();
    reload_result r;
    try {
        auto next = std::make_shared<conf::config>(conf::load_file(cfg_->source));
        r = apply(std::move(next));
    } catch (const conf::config_error& e) {
        r.errors = e.problems();
        for (const auto& p : r.errors) {
            PATROXY_LOG(error, "main") << "reload refused, the running configuration stays: " << p;
        }
        record(r);
    }
    notify_.reloaded();
}

reload_result daemon::apply(conf::config_ptr next_in) {
    reload_result r;
    auto next = std::make_shared<conf::config>(*next_in);
    next->generation = cfg_->generation + 1;
    r.restart_needed = conf::restart_needed(*cfg_, *next);
    for (const auto& what : r.restart_needed) {
        PATROXY_LOG(warn, "main") << "reload: " << what << " needs a restart (the running value stays)";
    }
    // What waits for a restart keeps its running value; everything else applies.
    next->workers = cfg_->workers;
    next->stats.enabled = cfg_->stats.enabled;
    next->stats.bind = cfg_->stats.bind;
    next->stats.port = cfg_->stats.port;
    next->control_socket = cfg_->control_socket;
    if (const auto err = server_.prepare(*next)) {
        r.errors = {*err};
        PATROXY_LOG(error, "main") << "reload refused, the running configuration stays: " << *err;
        record(r);
        return r;
    }
    // Which running cluster each new one continues: the one with its label;
    // else one with its scope (a renamed cluster); else, one cluster before
    // and after, that one (a single-cluster file's scope edited). It keeps
    // its monitor, its members' check history and their ids.
    std::vector<std::optional<std::size_t>> from(next->cluster_count());
    std::vector<bool> taken(cfg_->cluster_count(), false);
    const auto take = [&](std::size_t i, auto&& same) {
        for (std::size_t j = 0; j < cfg_->cluster_count() && !from[i]; ++j) {
            if (!taken[j] && same(j)) {
                from[i] = j;
                taken[j] = true;
            }
        }
    };
    for (std::size_t i = 0; i < next->cluster_count(); ++i) {
        take(i, [&](std::size_t j) { return cfg_->cluster_label(j) == next->cluster_label(i); });
    }
    for (std::size_t i = 0; i < next->cluster_count(); ++i) {
        take(i, [&](std::size_t j) { return cfg_->cluster(j).scope == next->cluster(i).scope; });
    }
    if (next->cluster_count() == 1 && cfg_->cluster_count() == 1) {
        take(0, [](std::size_t) { return true; });
    }
    std::vector<std::optional<std::size_t>> to(cfg_->cluster_count());
    for (std::size_t i = 0; i < from.size(); ++i) {
        if (from[i]) {
            to[*from[i]] = i;
        }
    }
    // Whose sessions drain: those of a listener gone or moved to another
    // cluster, or on a member gone or moved.
    const auto& running = server_.current();
    std::map<const proxy::listener_book*, std::string> gone_listeners;
    for (const auto& l : running->listeners) {
        const auto* later = next->listener(l.cfg->name);
        if (later == nullptr) {
            gone_listeners[l.book] = "a reload removed listener '" + l.cfg->name + "'";
        } else if (to[cfg_->cluster_of(*l.cfg)] != next->cluster_of(*later)) {
            gone_listeners[l.book] = "a reload moved listener '" + l.cfg->name + "' to cluster '" +
                                     next->cluster_label(next->cluster_of(*later)) + "'";
        }
    }
    // Members by the label of their cluster as the session knows it, and name
    // (two clusters may both have a pg0).
    const auto key = [](const std::string& label, const std::string& member) { return label + '\x1f' + member; };
    std::map<std::string, std::string> gone_members;
    for (std::size_t j = 0; j < cfg_->cluster_count(); ++j) {
        const auto label = cfg_->cluster_label(j);
        const auto& later = to[j] ? next->members_of(*to[j]) : std::vector<conf::member_config>{};
        for (const auto& m : cfg_->members_of(j)) {
            const auto now = std::find_if(later.begin(), later.end(), [&](const auto& n) { return n.name == m.name; });
            if (!to[j]) {
                gone_members[key(label, m.name)] = "a reload removed cluster '" + label + "'";
            } else if (now == later.end()) {
                gone_members[key(label, m.name)] = "a reload removed member '" + m.name + "'";
            } else if (now->host != m.host || now->port != m.port) {
                gone_members[key(label, m.name)] = "a reload moved member '" + m.name + "' to " + now->host + ":" +
                                                   std::to_string(now->port);
            }
        }
    }
    const conf::config_ptr applied = next;
    if (!gone_listeners.empty() || !gone_members.empty()) {
        // Delivered with the first routing that reflects the reload (the
        // monitor's topology below, or the server's new configuration), in
        // the same post: a session whose member leaves the set is then
        // draining, not one that lost its role (that would cut it), and no
        // session is routed by the old routing in between.
        proxy::drain_order order;
        order.spread = applied->timeouts.drain / 2;
        order.deadline = std::chrono::steady_clock::now() + applied->timeouts.drain;
        order.reason = [gone_listeners, gone_members, key](const proxy::session& s) -> std::string {
            if (const auto it = gone_listeners.find(s.listener_book_of()); it != gone_listeners.end()) {
                return it->second;
            }
            if (const auto it = gone_members.find(key(s.cluster_label(), s.member_name())); it != gone_members.end()) {
                return it->second;
            }
            return {};
        };
        server_.drain_with_next_routing(std::move(order));
    }
    // Each cluster's monitor: one that continues takes its new view (and
    // label), a new one starts, one no cluster continues stops. The stats
    // thread reads clusters_ under the lock: all of it is rebuilt under it.
    {
        const std::lock_guard lock(clusters_mutex_);
        std::vector<cluster_watch> next_watches;
        for (std::size_t i = 0; i < applied->cluster_count(); ++i) {
            if (from[i]) {
                auto& w = clusters_[*from[i]];
                const auto label = applied->cluster_label(i);
                if (*w.label != label) {
                    PATROXY_LOG(info, "main") << "reload: cluster '" << *w.label << "' is now '" << label << "'";
                    *w.label = label;
                }
                w.monitor->apply(conf::cluster_view(*applied, i));
                next_watches.push_back(std::move(w));
            } else {
                PATROXY_LOG(info, "main") << "reload: cluster '" << applied->cluster_label(i) << "' added";
                next_watches.push_back(watch_cluster(*applied, i));
                next_watches.back().monitor->start();
            }
        }
        for (std::size_t j = 0; j < clusters_.size(); ++j) {
            if (!to[j]) {
                PATROXY_LOG(info, "main") << "reload: cluster '" << *clusters_[j].label << "' removed: its sessions drain";
                clusters_[j].monitor->stop();
            }
        }
        clusters_ = std::move(next_watches);
        current_.store(applied);
    }
    server_.apply(applied, latest_topologies());
    log::set_level(to_log_level(applied->log.level));
    vip_.reconfigure(applied->vip);
    if (stats_) {
        boost::asio::post(stats_ioc_, [this, s = applied->stats] { stats_->apply(s); });
    }
    cfg_ = applied;
    r.applied = true;
    PATROXY_LOG(info, "main") << "reload: configuration generation " << applied->generation << " applied ("
                              << applied->cluster_count() << " cluster(s), " << applied->listeners.size()
                              << " listeners)";
    record(r);
    return r;
}

// SIGUSR2: the next binary, started apart from us (a grandchild, so nobody
// has to reap it), takes the sockets over the control socket.
void daemon::spawn_next() {
    if (handing_over_) {
        PATROXY_LOG(warn, "upgrade") << "SIGUSR2: a binary upgrade is already in progress; ignored";
        return;
    }
    if (draining_ || !control_server_ || options_.executable.empty()) {
        PATROXY_LOG(warn, "upgrade") << "SIGUSR2: no binary upgrade without a control socket; ignored";
        return;
    }
    PATROXY_LOG(info, "upgrade") << "SIGUSR2: starting " << options_.executable << " --upgrade";
    // Built before the fork: the children only make async-signal-safe calls.
    const std::string failed = "patroxy: SIGUSR2: cannot run " + options_.executable + ": ";
    const pid_t child = ::fork();
    if (child == 0) {
        if (::fork() == 0) {
            ::setsid();
            // Asio's sockets are not close-on-exec: Patroni checks, stats
            // connections, the stats and control listeners would live on in
            // every generation. The next process gets what it needs over the
            // control socket; stdin, stdout and stderr (the log) stay.
            close_descriptors_from(3);
            ::execl(options_.executable.c_str(), options_.executable.c_str(), "--upgrade", "-c",
                    cfg_->source.c_str(), static_cast<char*>(nullptr));
            const int error = errno;
            const char* text = ::strerrordesc_np(error);
            [[maybe_unused]] auto w1 = ::write(2, failed.data(), failed.size());
            [[maybe_unused]] auto w2 = ::write(2, text, std::strlen(text));
            [[maybe_unused]] auto w3 = ::write(2, "\n", 1);
            ::_exit(127);
        }
        ::_exit(0);
    }
    if (child > 0) {
        ::waitpid(child, nullptr, 0);
    }
}

handover_payload daemon::prepare_handover() {
    handover_payload p;
    handing_over_ = true;
    server_.pause_for_handover();
    const auto state = vip_.hand_over();
    nlohmann::json sockets = nlohmann::json::array();
    // Copies: the exchange sends them later, whatever closes meanwhile.
    const auto add = [&](nlohmann::json what, int fd) {
        proxy::unique_fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!copy) {
            PATROXY_LOG(error, "upgrade") << "cannot copy a socket for the handover: "
                                          << proxy::last_errno().message() << " (" << what.dump() << " left out)";
            return;
        }
        sockets.push_back(std::move(what));
        p.fds.push_back(std::move(copy));
    };
    for (const auto& [name, fd] : server_.sockets()) {
        add({{"kind", "listener"}, {"name", name}}, fd);
    }
    if (stats_) {
        add({{"kind", "stats"}}, stats_->native_handle());
    }
    if (control_server_) {
        add({{"kind", "control"}}, control_server_->native_handle());
    }
    p.header = {{"version", PATROXY_VERSION},
                {"handover", handover_protocol},
                {"sockets", sockets},
                {"vrrp", {{"state", std::string(vip::to_string(state.state))},
                          {"interface", state.interface},
                          {"address", state.address},
                          {"prefix", state.prefix},
                          {"vrid", state.virtual_router_id}}},
                {"members", last_answers()}};
    vip_handed_ = state;
    return p;
}

void daemon::handover_done(bool taken, bool adopted) {
    handing_over_ = false;
    if (!taken) {
        PATROXY_LOG(error, "upgrade") << "the next process did not confirm the handover: accepting again";
        server_.resume_after_handover();
        vip_.start(vip_handed_);
        return;
    }
    if (!adopted) {
        vip_.release_handed_over(vip_handed_);  // nobody else would remove it
    }
    PATROXY_LOG(info, "upgrade") << "the next process accepts now: draining " << server_.session_count()
                                 << " session(s) for up to " << cfg_->timeouts.drain.count() << "ms";
    server_.release_sockets();
    begin_drain("patroxy is upgrading", false);
}

}  // namespace patroxy::app
