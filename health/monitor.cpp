#include "health/monitor.hpp"

#include "base/log.hpp"
#include "base/text.hpp"
#include "conf/loader.hpp"

#include <algorithm>
#include <utility>

namespace patroxy::health {

namespace {
// A new lock holder is asked this often until it answers as primary (writes
// resume within a check of the promotion), for at most confirm_for.
constexpr std::chrono::milliseconds confirm_interval{50};
constexpr std::chrono::seconds confirm_for{30};
constexpr std::chrono::milliseconds tick_interval{500};
constexpr std::chrono::seconds reresolve_every{60};
constexpr std::chrono::seconds retry_resolve_after{2};
constexpr std::size_t max_discovered = 128;
// Without a ttl in the DCS's config key, Patroni's default.
constexpr std::chrono::seconds default_ttl{30};

bool dcs_says_primary(const dcs_member& m) {
    return (m.role == "master" || m.role == "primary" || m.role == "standby_leader") && m.state == "running";
}

// Patroni 3.0 writes state "running" for a replica, 3.1+ "streaming"; a
// replica restoring from the archive (3.0.4+ say so) is not taken on the
// key's word.
bool dcs_says_replica(const dcs_member& m) {
    return m.role == "replica" && (m.state == "running" || m.state == "streaming") &&
           (m.replication_state.empty() || m.replication_state == "streaming");
}

}  // namespace

monitor::monitor(net::io_context& control, conf::config_ptr cfg, publisher publish, member_id first_id,
                 const std::string& label)
    : control_(control),
      publish_(std::move(publish)),
      next_id_(first_id),
      health_area_(label.empty() ? "health" : "health[" + label + "]"),
      dcs_area_(label.empty() ? "dcs" : "dcs[" + label + "]"),
      one_of_several_(!label.empty()),
      tick_timer_(control) {
    apply(std::move(cfg));
}

monitor::~monitor() {
    stop();
    alive_.reset();
}

std::shared_ptr<patroni_client> monitor::client_for(const member_slot& slot) {
    const auto id = slot.id;
    return std::make_shared<patroni_client>(control_, slot.cfg, cfg_->health.timeout,
                                            [this, id](check_result r) { return on_check(id, std::move(r)); });
}

monitor::member_slot* monitor::find(member_id id) {
    const auto it = std::find_if(slots_.begin(), slots_.end(), [&](const member_slot& s) { return s.id == id; });
    return it == slots_.end() ? nullptr : &*it;
}

monitor::member_slot* monitor::find(const std::string& name) {
    const auto it = std::find_if(slots_.begin(), slots_.end(), [&](const member_slot& s) { return s.cfg.name == name; });
    return it == slots_.end() ? nullptr : &*it;
}

std::vector<monitor::wanted> monitor::wanted_members() {
    auto out = listed_members();
    // An old leader whose lease expired while it hangs may take the lock back
    // (health.handback_guard): its slot stays, with its sessions, though its
    // member key went with the lease.
    for (const auto& s : slots_) {
        const bool listed = std::any_of(out.begin(), out.end(), [&](const wanted& w) { return w.cfg.name == s.cfg.name; });
        if (!listed && may_hand_back(s)) {
            out.push_back({s.cfg, s.discovered});
        }
    }
    return out;
}

std::vector<monitor::wanted> monitor::listed_members() {
    std::vector<wanted> out;
    const bool dcs = cfg_->dcs.enabled && have_dcs_view_;
    const auto unusable = [&](const std::string& name, const std::string& why) {
        if (unusable_.insert(name).second) {
            PATROXY_LOG(warn, health_area_) << base::printable(name) << ": not checked or routed: " << base::printable(why);
        }
    };
    const auto api_of = [&](const dcs_member& d, conf::member_config& m) {
        std::string why;
        auto api = conf::parse_api_url(d.api_url, why);
        if (api) {
            m.api = *api;
            if (!m.api_auth) {
                m.api_auth = cfg_->dcs.api_auth;
            }
            if (!m.api_tls) {
                m.api_tls = cfg_->dcs.api_tls;
            }
        }
        return why;
    };
    if (!cfg_->members.empty()) {
        // The file's list restricts the set; what it leaves out comes from the member's key.
        for (auto m : cfg_->members) {
            const auto d = dcs ? dcs_view_.members.find(m.name) : dcs_view_.members.end();
            std::string why = "the file gives no address and the DCS has no key for it";
            if (d != dcs_view_.members.end()) {
                if (m.host.empty() && !d->second.host.empty()) {
                    m.host = d->second.host;
                    m.port = d->second.port;
                }
                if (m.api.host.empty()) {
                    why = api_of(d->second, m);
                }
            }
            if (m.host.empty() || m.api.host.empty()) {
                unusable(m.name, m.host.empty() ? why : "no REST API: " + why);
                continue;
            }
            unusable_.erase(m.name);
            out.push_back({std::move(m), false});
        }
        return out;
    }
    if (!dcs) {
        for (const auto& s : slots_) {
            out.push_back({s.cfg, s.discovered});  // nothing new known: the set stays
        }
        return out;
    }
    for (const auto& [name, d] : dcs_view_.members) {
        if (!conf::valid_member_name(name)) {
            unusable(name, "not a usable member name");
            continue;
        }
        conf::member_config m;
        m.name = name;
        m.host = d.host;
        m.port = d.port;
        if (m.host.empty()) {
            unusable(name, "its conn_url '" + d.conn_url + "' names no host");
            continue;
        }
        if (const auto why = api_of(d, m); m.api.host.empty()) {
            unusable(name, "its api_url: " + why);
            continue;
        }
        if (out.size() == max_discovered) {
            unusable(name, "more than 128 members in the DCS");
            continue;
        }
        unusable_.erase(name);
        out.push_back({std::move(m), true});
    }
    if (out.empty() && !slots_.empty()) {
        // A DCS that lists nobody (a wrong scope, a wiped cluster) does not
        // take every member away: routing goes on with those it knows.
        if (unusable_.insert("").second) {
            PATROXY_LOG(warn, health_area_) << "the DCS lists no usable member under " << dcs_prefix(cfg_->dcs.ns, cfg_->dcs.scope)
                                        << ": keeping the " << slots_.size() << " known";
        }
        for (const auto& s : slots_) {
            out.push_back({s.cfg, s.discovered});
        }
    } else {
        unusable_.erase("");
    }
    return out;
}

bool monitor::reconcile(bool health_changed) {
    auto want = wanted_members();
    std::vector<member_slot> next;
    next.reserve(want.size());
    bool set_changed = false;
    for (auto& w : want) {
        const auto& m = w.cfg;
        const auto old = std::find_if(slots_.begin(), slots_.end(), [&](const member_slot& s) { return s.cfg.name == m.name; });
        if (old == slots_.end()) {
            auto [it, fresh] = ids_.emplace(m.name, next_id_);
            if (fresh) {
                ++next_id_;
            }
            next.push_back({it->second, m, w.discovered, member_tracker(cfg_->health.rise, cfg_->health.fall), nullptr, {}, {}});
            auto& slot = next.back();
            slot.client = client_for(slot);
            if (!conf::is_ip_literal(m.host)) {
                slot.where.name = m.host;
            } else {
                slot.where.ip = m.host;
            }
            if (const auto seed = pending_seeds_.find(m.name); seed != pending_seeds_.end()) {
                seed_slot(slot, seed->second);
                pending_seeds_.erase(seed);
            }
            set_changed = true;
            if (started_) {
                PATROXY_LOG(info, health_area_) << m.name << ": added" << (w.discovered ? " from the DCS" : "") << " (PostgreSQL "
                                            << m.host << ":" << m.port << ", API " << m.api.url << ")";
                slot.client->start();
            }
            continue;
        }
        member_slot slot = std::move(*old);
        old->client = nullptr;  // moved: what is left of `old` is dropped below
        const bool endpoint_moved = slot.cfg.host != m.host || slot.cfg.port != m.port;
        const bool api_moved = slot.cfg.api.url != m.api.url || slot.cfg.api.host != m.api.host ||
                               slot.cfg.api.port != m.api.port || slot.cfg.api_auth != m.api_auth ||
                               slot.cfg.api_tls != m.api_tls;
        slot.cfg = m;
        slot.discovered = w.discovered;
        if (endpoint_moved) {
            slot.where = {};
            if (!conf::is_ip_literal(m.host)) {
                slot.where.name = m.host;
            } else {
                slot.where.ip = m.host;
            }
            if (started_) {
                PATROXY_LOG(info, health_area_) << m.name << ": PostgreSQL now at " << m.host << ":" << m.port;
            }
        }
        if (health_changed) {
            slot.tracker.set_thresholds(cfg_->health.rise, cfg_->health.fall);
        }
        if (api_moved || health_changed) {
            // A new client for a new API (or a new timeout); the history stays.
            slot.client->stop();
            slot.client = client_for(slot);
            if (started_) {
                slot.client->start();
            }
        }
        set_changed = set_changed || endpoint_moved;
        next.push_back(std::move(slot));
    }
    for (auto& s : slots_) {
        if (s.client) {  // not carried over
            PATROXY_LOG(info, health_area_) << s.cfg.name << ": removed"
                                        << (s.discovered ? " (its key left the DCS)" : " (gone from the file)");
            s.client->stop();
            set_changed = true;
        }
    }
    slots_ = std::move(next);
    if (started_) {
        for (auto& s : slots_) {
            if (!s.where.name.empty() && s.where.ip.empty()) {
                resolve(s);
            }
        }
    }
    return set_changed;
}

void monitor::apply(conf::config_ptr cfg) {
    const bool health_changed = !cfg_ || cfg_->health.rise != cfg->health.rise || cfg_->health.fall != cfg->health.fall ||
                                cfg_->health.timeout != cfg->health.timeout;
    const bool dcs_changed = !cfg_ || !(cfg_->dcs == cfg->dcs);
    cfg_ = std::move(cfg);
    if (dcs_changed && started_) {
        restart_dcs();
    }
    const bool set_changed = reconcile(health_changed);
    const auto t = rebuild();
    latest_.store(t, std::memory_order_release);
    if (set_changed && started_) {
        route(t);
    } else if (!routed_) {
        routed_ = t;  // before start: what the workers begin with
    }
}

void monitor::restart_dcs() {
    if (watcher_) {
        watcher_->stop();
        watcher_.reset();
    }
    have_dcs_view_ = false;
    dcs_view_ = {};
    confirming_.reset();
    failover_since_.reset();
    if (!cfg_->dcs.enabled) {
        std::lock_guard lock(dcs_mutex_);
        dcs_state_.reset();
        return;
    }
    std::string where;
    for (const auto& [host, port] : cfg_->dcs.hosts) {
        where += (where.empty() ? "" : ",") + host + ":" + std::to_string(port);
    }
    PATROXY_LOG(info, dcs_area_) << "watching " << (cfg_->dcs.type == conf::dcs_config::kind::etcd3 ? "etcd3" : "etcd")
                             << " " << dcs_prefix(cfg_->dcs.ns, cfg_->dcs.scope) << " on " << where;
    watcher_ = std::make_shared<dcs_watcher>(control_, cfg_->dcs, [this](const dcs_view& v) { on_dcs(v); });
    watcher_->start();
    refresh_dcs_state();
}

void monitor::start() {
    started_ = true;
    for (auto& s : slots_) {
        s.client->start();
        resolve(s);
    }
    if (cfg_->dcs.enabled) {
        restart_dcs();
    }
    tick();
}

void monitor::stop() {
    started_ = false;
    for (auto& s : slots_) {
        if (s.client) {
            s.client->stop();
        }
    }
    if (watcher_) {
        watcher_->stop();
    }
    tick_timer_.cancel();
}

void monitor::tick() {
    if (!started_) {
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool fresh = dcs_fresh(now);
    if (cfg_->dcs.enabled && fresh != was_fresh_) {
        if (fresh) {
            PATROXY_LOG(info, dcs_area_) << "the DCS's view is current: the leader key decides who writes";
        } else {
            PATROXY_LOG(warn, dcs_area_) << "nothing from etcd for "
                                     << std::chrono::duration_cast<std::chrono::seconds>(now - watcher_->last_contact()).count()
                                     << "s: leadership from the members' own answers and their GET /cluster";
        }
        was_fresh_ = fresh;
    }
    if (!fresh && now - cluster_asked_ >= cfg_->health.interval) {
        ask_cluster(std::nullopt);
    }
    for (auto& s : slots_) {
        const auto& a = s.where;
        if (!a.name.empty() && !a.resolving &&
            now - a.resolved_at >= (a.ip.empty() ? std::chrono::seconds{retry_resolve_after} : reresolve_every)) {
            resolve(s);
        }
    }
    if (std::exchange(reconcile_pending_, false)) {
        reconcile(false);
    }
    update();  // a view or an answer that went stale changes who leads
    refresh_dcs_state();
    tick_timer_.expires_after(tick_interval);
    tick_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (!ec && alive.lock()) {
            tick();
        }
    });
}

void monitor::resolve(member_slot& slot) {
    auto& a = slot.where;
    if (a.name.empty() || a.resolving || !started_) {
        return;
    }
    if (!a.resolver) {
        a.resolver = std::make_shared<net::ip::tcp::resolver>(control_);
    }
    a.resolving = true;
    const auto id = slot.id;
    a.resolver->async_resolve(
        a.name, std::to_string(slot.cfg.port),
        [this, alive = std::weak_ptr<bool>(alive_), id, name = a.name, keep = a.resolver](
            const boost::system::error_code& ec, const net::ip::tcp::resolver::results_type& results) {
            if (!alive.lock()) {
                return;
            }
            auto* s = find(id);
            if (s == nullptr || s->where.name != name) {
                return;  // removed or moved meanwhile
            }
            s->where.resolving = false;
            s->where.resolved_at = std::chrono::steady_clock::now();
            if (ec || results.empty()) {
                if (s->where.ip.empty()) {
                    PATROXY_LOG(warn, health_area_) << s->cfg.name << ": cannot resolve '" << name << "' ("
                                                << (ec ? ec.message() : std::string("no address"))
                                                << "): not routed until it resolves";
                }
                return;  // a failure keeps the address it had
            }
            // A name with both: IPv4 first (PostgreSQL's listen_addresses most often has it).
            auto pick = results.begin()->endpoint().address();
            for (const auto& e : results) {
                if (e.endpoint().address().is_v4()) {
                    pick = e.endpoint().address();
                    break;
                }
            }
            const auto ip = pick.to_string();
            if (ip != s->where.ip) {
                PATROXY_LOG(info, health_area_) << s->cfg.name << ": " << name << " is " << ip;
                s->where.ip = ip;
                update();
            }
        });
}

monitor::leader_change monitor::last_leader_change() const {
    std::lock_guard lock(change_mutex_);
    return last_change_;
}

std::optional<dcs_state> monitor::dcs() const {
    std::lock_guard lock(dcs_mutex_);
    return dcs_state_;
}

void monitor::refresh_dcs_state() {
    if (!watcher_) {
        return;
    }
    dcs_state st;
    st.type = cfg_->dcs.type == conf::dcs_config::kind::etcd3 ? "etcd3" : "etcd";
    st.watcher = watcher_->state();
    const auto now = std::chrono::steady_clock::now();
    st.fresh = dcs_fresh(now);
    st.stale_after = cfg_->dcs.stale_after.count() > 0
                         ? cfg_->dcs.stale_after
                         : std::chrono::milliseconds(ttl());
    if (have_dcs_view_) {
        st.leader = dcs_view_.leader;
        st.members = dcs_view_.members.size();
        st.failover = dcs_view_.failover;
        st.ttl = dcs_view_.ttl;
    }
    std::lock_guard lock(dcs_mutex_);
    dcs_state_ = std::move(st);
}

bool monitor::dcs_fresh(std::chrono::steady_clock::time_point now) const {
    if (!watcher_ || !have_dcs_view_ || watcher_->last_contact() == std::chrono::steady_clock::time_point{}) {
        return false;
    }
    const auto limit = cfg_->dcs.stale_after.count() > 0
                           ? cfg_->dcs.stale_after
                           : std::chrono::milliseconds(ttl());
    return now - watcher_->last_contact() < limit;
}

void monitor::on_dcs(const dcs_view& v) {
    const auto now = std::chrono::steady_clock::now();
    const bool first = !have_dcs_view_;
    const auto before = dcs_view_;
    dcs_view_ = v;
    have_dcs_view_ = true;
    if (first || before.leader != v.leader) {
        PATROXY_LOG(info, dcs_area_) << "leader key: " << (first ? "" : base::printable(before.leader.value_or("none")) + " -> ")
                                 << base::printable(v.leader.value_or("none")) << " (revision " << v.revision << ")";
        confirming_.reset();
        if (v.leader) {
            confirming_ = *v.leader;
            confirming_since_ = now;
        }
    }
    if (before.failover != v.failover && v.failover) {
        PATROXY_LOG(info, dcs_area_) << "failover key: from " << base::printable(v.failover->leader.empty() ? "any" : v.failover->leader)
                                 << " to " << base::printable(v.failover->member.empty() ? "the best candidate" : v.failover->member)
                                 << (v.failover->scheduled_at ? " (scheduled)" : "");
    }
    const bool set_changed = reconcile(false);
    // Whoever's key moved is asked now rather than at its next check.
    for (auto& s : slots_) {
        const auto was = before.members.find(s.cfg.name);
        const auto is = v.members.find(s.cfg.name);
        const bool moved = (was == before.members.end()) != (is == v.members.end()) ||
                           (is != v.members.end() && (was->second.role != is->second.role ||
                                                      was->second.state != is->second.state));
        if (moved || (confirming_ && *confirming_ == s.cfg.name && (first || before.leader != v.leader))) {
            s.client->check_within(std::chrono::milliseconds{0});
        }
    }
    if (v.failover && before.failover != v.failover) {
        for (auto& s : slots_) {
            s.client->check_within(cfg_->health.fast_interval);
        }
    }
    (void)set_changed;  // update() publishes whatever changed, the set included
    update();
    refresh_dcs_state();
}

void monitor::suspect(member_id member) {
    auto* slot = find(member);
    if (slot == nullptr) {
        return;  // gone since the session met it
    }
    slot->client->check_within(std::chrono::milliseconds{0});
    const auto t = latest();
    if (t->leader && t->members[*t->leader].id == member) {
        for (auto& s : slots_) {
            s.client->check_within(cfg_->health.fast_interval);
        }
    }
}

void monitor::seed(const std::string& member, const std::string& patroni_body) {
    auto* slot = find(member);
    if (slot == nullptr) {
        if (pending_seeds_.size() < max_discovered) {
            pending_seeds_[member] = patroni_body;  // a member the DCS will name
        }
        return;
    }
    if (seed_slot(*slot, patroni_body)) {
        update();
    }
}

bool monitor::seed_slot(member_slot& slot, const std::string& patroni_body) {
    std::string why;
    auto report = parse_patroni(patroni_body, why);
    if (!report) {
        return false;
    }
    if (one_of_several_ && !report->scope.empty() && report->scope != cfg_->scope) {
        // Another cluster's member of the same name (the previous process
        // had its clusters in another order): its answer says nothing of ours.
        PATROXY_LOG(info, health_area_) << slot.cfg.name << ": the previous process's answer is of scope '"
                                        << base::printable(report->scope) << "', not '" << cfg_->scope
                                        << "': not taken";
        return false;
    }
    check_result r;
    r.answered = true;
    r.http_status = 200;
    r.report = std::move(report);
    const auto now = std::chrono::steady_clock::now();
    r.at = std::chrono::system_clock::now();
    r.steady_at = now;
    slot.tracker.seed_up(std::move(r), now);
    slot.last_body = patroni_body;
    return true;
}

std::map<std::string, std::string> monitor::last_answers() const {
    std::map<std::string, std::string> out;
    for (const auto& s : slots_) {
        if (s.tracker.up() && !s.last_body.empty()) {
            out[s.cfg.name] = s.last_body;
        }
    }
    return out;
}

bool monitor::unsettled() const {
    const auto t = latest();
    return !t->leader || t->split_brain() || t->writes_held || handback_.has_value();
}

topology_ptr monitor::rebuild() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<member_view> views;
    views.reserve(slots_.size());
    const bool dcs_fresh_now = dcs_fresh(now);
    for (const auto& s : slots_) {
        const auto& t = s.tracker;
        member_view v;
        v.id = s.id;
        v.name = s.cfg.name;
        v.host = s.where.ip;
        v.address_name = s.where.name;
        v.api_url = s.cfg.api.url;
        v.port = s.cfg.port;
        v.up = t.up();
        v.ever_up = t.ever_up();
        v.discovered = s.discovered;
        if (have_dcs_view_) {
            const auto d = dcs_view_.members.find(s.cfg.name);
            v.dcs_primary = d != dcs_view_.members.end() && dcs_says_primary(d->second);
            // Patroni refreshes the key every loop and it expires with the
            // ttl: present in a view read within the ttl, it is current.
            v.dcs_replica = dcs_fresh_now && d != dcs_view_.members.end() && dcs_says_replica(d->second);
        }
        v.health = t.checks().health();
        v.report = t.report();
        v.last_check = t.last();
        v.last_change = t.last_change();
        v.downtime = t.downtime(now);
        v.weight = s.cfg.weight;
        v.maxconn = s.cfg.maxconn;
        views.push_back(std::move(v));
    }
    const auto lock = observe_lock(now);
    guard_handback(lock, now);
    auto next = build_topology(++generation_, std::move(views), cfg_->health, lock);
    if (handback_) {
        next.fenced = handback_->id;
        next.writes_held = next.leader.has_value();   // whatever decided the leader meanwhile
    }
    eligibility_.apply(next, cfg_->listeners, cfg_->health.rise);
    return std::make_shared<const topology>(std::move(next));
}

std::chrono::seconds monitor::ttl() const {
    return dcs_view_.ttl.value_or(default_ttl);
}

void monitor::update() {
    const auto before = latest();
    const auto next = rebuild();
    latest_.store(next, std::memory_order_release);
    if (next->double_claim_resolved() && !(before && before->double_claim_resolved())) {
        std::string claimants;
        for (auto i : next->leader_claimants) {
            claimants += (claimants.empty() ? "" : ",") + next->members[i].name;
        }
        PATROXY_LOG(warn, health_area_) << claimants << " all claim leadership; the lock names "
                                    << next->members[*next->leader].name << " (" << to_string(next->leader_source)
                                    << "): writes go there";
    }
    if (started_) {
        route(next);
    }
}

std::chrono::milliseconds monitor::on_check(member_id member, check_result r) {
    auto* slot = find(member);
    if (slot == nullptr) {
        return std::chrono::hours{1};  // a client of a member just removed: it is stopped
    }
    auto& tracker = slot->tracker;
    const auto name = slot->cfg.name;
    const bool was_up = tracker.up();
    const bool answered = r.answered;
    const bool primary = answered && r.report->claims_leadership() && r.report->running();
    if (!answered) {
        PATROXY_LOG(debug, health_area_) << name << ": check failed: " << r.error;
    } else {
        PATROXY_LOG(debug, health_area_) << name << ": " << r.report->role_text << ", " << r.report->state << " (HTTP "
                                     << r.http_status << ", " << r.duration.count() << " ms)";
        slot->last_body = std::move(r.body);
    }
    tracker.record(std::move(r), std::chrono::steady_clock::now());
    if (!was_up && tracker.up()) {
        PATROXY_LOG(info, health_area_) << name << " is UP";
    } else if (was_up && !tracker.up()) {
        PATROXY_LOG(warn, health_area_) << name << " is DOWN after failed checks: " << tracker.last().error;
    }
    const auto before = latest();
    const bool led = before->leader && before->members[*before->leader].id == member;
    const auto now = std::chrono::steady_clock::now();
    if (!answered && led && !dcs_fresh(now)) {
        ask_cluster(member);  // does the rest of the cluster still see it holding the lock?
    }
    update();
    if (confirming_ && *confirming_ == name) {
        if (primary || now - confirming_since_ > confirm_for) {
            confirming_.reset();
        } else {
            return confirm_interval;
        }
    }
    return tracker.changing() || unsettled() ? cfg_->health.fast_interval : cfg_->health.interval;
}

void monitor::route(const topology_ptr& next) {
    if (routed_ && next->same_routing(*routed_)) {
        return;
    }
    const auto name_of = [&](const std::optional<std::size_t>& i) {
        return i ? next->members[*i].name : std::string("none");
    };
    std::string readers;
    for (auto i : next->readable) {
        readers += (readers.empty() ? "" : ",") + next->members[i].name;
    }
    std::string classes;   // where each listener sends new sessions
    for (const auto& c : next->classes) {
        std::size_t via = 0;
        std::string names;
        for (auto i : c.routed(&via)) {
            names += (names.empty() ? "" : ",") + next->members[i].name;
        }
        classes += " " + c.listener + "=" + (names.empty() ? "none" : names) + (via > 0 ? "(fallback)" : "");
    }
    std::string claimants;
    for (auto i : next->leader_claimants) {
        claimants += (claimants.empty() ? "" : ",") + next->members[i].name;
    }
    if (next->split_brain() && !(routed_ && routed_->split_brain())) {
        split_brain_events_.fetch_add(1, std::memory_order_relaxed);
        PATROXY_LOG(error, health_area_) << "split brain: " << claimants << " all claim leadership and no lock tells them apart; "
                                     << "writes routed to none";
    }
    const auto leader_id = [](const topology& t) {
        return t.leader ? std::optional<member_id>(t.members[*t.leader].id) : std::nullopt;
    };
    if (routed_ && leader_id(*routed_) != leader_id(*next)) {
        leader_changes_.fetch_add(1, std::memory_order_relaxed);
        const auto now = std::chrono::steady_clock::now();
        if (!next->leader) {
            leaderless_since_ = now;
        } else {
            std::lock_guard lock(change_mutex_);
            last_change_.at = std::chrono::system_clock::now();
            last_change_.leaderless = leaderless_since_ ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                                              now - *leaderless_since_)
                                                        : std::chrono::milliseconds{0};
            leaderless_since_.reset();
        }
    }
    PATROXY_LOG(info, health_area_) << "routing generation " << next->generation << ": leader=" << name_of(next->leader)
                                << " (" << to_string(next->leader_source) << ")" << (next->writes_held ? " writes held" : "")
                                << " readers=" << (readers.empty() ? "none" : readers) << classes;
    routed_ = next;
    publish_(next);
    // The cluster just changed: look at everyone soon rather than at their
    // next regular check.
    if (unsettled()) {
        for (auto& s : slots_) {
            s.client->check_within(cfg_->health.fast_interval);
        }
    }
}

}  // namespace patroxy::health
