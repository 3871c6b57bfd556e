// A session's routing: choosing a member, holding for one, and following
// routing changes (cutting, pausing or draining the session on a member that
// lost its role).
#include "proxy/session.hpp"

#include "base/log.hpp"
#include "protocol/error_response.hpp"
#include "proxy/balancer.hpp"
#include "proxy/worker.hpp"

#include <algorithm>
#include <utility>

namespace patroxy::proxy {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

namespace {
// Every member of the class at its maxconn: look again this soon (a slot
// frees when one of its sessions ends), within wait_for_backend.
constexpr milliseconds member_full_retry{20};
}  // namespace

const cluster_route* session::cluster_now() const {
    const auto& now = owner_.current();
    if (const auto* route = now.route_of(book_)) {
        return route->cluster;
    }
    // A reload removed its listener: its cluster, while the configuration has it.
    const auto& label = listener().cluster;
    for (const auto& c : now.clusters) {
        if (label.empty() ? &c == &now.clusters.front() : c.label == label) {
            return &c;
        }
    }
    return nullptr;
}

std::string session::class_text() const {
    const auto* cluster = cluster_now();
    const bool standby = cluster != nullptr && cluster->topology->standby_cluster();
    switch (listener().role) {
    case conf::listener_role::write:
        return standby ? "primary (the cluster is a standby cluster: its leader is a standby_leader)"
                                      : "leader";
    case conf::listener_role::standby_leader: return "standby leader";
    case conf::listener_role::read: return "healthy replica";
    case conf::listener_role::sync: return "synchronous standby";
    case conf::listener_role::async: return "asynchronous replica";
    case conf::listener_role::any: return "member";
    }
    return "member";
}

void session::route() {
    // Its FIN may have come with the first packet, reported once and already
    // taken: a client that left is not sent on, now or after a hold.
    if (left_while_waiting(from_client)) {
        return;
    }
    // A shutdown's drain turns away a session that has no member yet; an
    // upgrade's routes it (the next process accepts new ones; this one still
    // follows the members) and closes it after its first transaction.
    if (draining_ && drain_refuses_unrouted_ && !soft_drain_) {
        return refuse(close_reason::shutdown, protocol::sqlstate::cannot_connect_now, "patroxy: " + drain_why_);
    }
    if (!routing_started_) {
        routing_started_ = true;
        route_deadline_ = clock::now() + timeouts().wait_for_backend;
    }
    const auto& now = owner_.current();
    const auto* route = now.route_of(book_);
    if (route == nullptr) {
        // A reload removed the listener that accepted it: no member to go to.
        return refuse(close_reason::shutdown, protocol::sqlstate::admin_shutdown,
                      "patroxy: listener '" + listener().name + "' was removed by a reload");
    }
    release_slot();  // a new choice gives back the member the last one took
    const auto& l = listener();
    const auto turn = l.role == conf::listener_role::write ? 0 : book_->cursor.fetch_add(1, std::memory_order_relaxed);
    // Today's member set and roles, with the settings this session started under.
    const auto& topo = route->topology();
    const auto pick = candidates(topo, l, turn, route->members);
    member_full_ = pick.full;
    for (const auto at : pick.members) {
        const auto& m = topo.members[at];
        if (!reserve(*route->members[at], m.maxconn)) {
            member_full_ = true;  // another worker took its last slot
            continue;
        }
        leave_hold();
        slot_ = route->members[at];
        role_ = pick.role;
        member_ = m.id;
        member_name_ = m.name;
        member_book_ = route->members[at];
        endpoint_ = route->cluster->endpoints[at];
        return connect_to();
    }
    if (member_full_) {
        // HAProxy's queue: a slot frees when a session ends; look again soon.
        return hold(member_full_retry);
    }
    hold(timeouts().wait_for_backend);
}

// Keep the client (its first packet stays with us) until a member appears, a
// retry is due, or wait_for_backend has passed since routing began.
void session::hold(milliseconds retry_after) {
    release_slot();  // a member it failed to reach keeps no slot while it waits
    auto left = std::chrono::duration_cast<milliseconds>(route_deadline_ - clock::now());
    if (guard_holds()) {
        left = std::max(left, guard_recheck);   // past wait_for_backend while the guard lasts (it is bounded)
    }
    if (phase_ != phase::holding) {
        phase_ = phase::holding;
        bump(counters().held);
    }
    arm(std::max(milliseconds{0}, std::min(left, retry_after)), close_reason::no_backend);
}

// A handback guard holds new writes until the old leader takes its lock
// back or is known not to: a client is told nothing before then.
bool session::guard_holds() const {
    const auto* cluster = cluster_now();
    if (cluster == nullptr || !cluster->topology->fenced) {
        return false;
    }
    const auto role = listener().role;
    return role == conf::listener_role::write || role == conf::listener_role::any ||
           std::any_of(listener().fallback.begin(), listener().fallback.end(),
                       [](conf::listener_role r) { return r == conf::listener_role::write; });
}

void session::leave_hold() {
    if (phase_ == phase::holding) {
        drop(counters().held);
        phase_ = phase::first_packet;
    }
}

void session::release_slot() {
    if (slot_ != nullptr) {
        slot_->routed.fetch_sub(1, std::memory_order_relaxed);
        slot_ = nullptr;
    }
}

void session::on_routing() {
    const auto* cluster = cluster_now();
    if (cluster == nullptr) {
        // A reload removed its cluster (and so its listener): that reload's drain closes it.
        if (phase_ == phase::holding || phase_ == phase::connecting) {
            server_.reset();
            route();  // refused: its listener is gone
        }
        return;
    }
    const auto& topo = *cluster->topology;
    switch (phase_) {
    case phase::holding:
        return route();
    case phase::connecting:
        // Nothing was said to the client yet: route it afresh. The pending
        // connect's handler finds the phase or attempt moved on and stops.
        if (member_ && (!keeps_session(topo, listener(), role_, *member_) ||
                        !drain_reason(topo, listener(), role_, *member_).empty())) {
            server_.reset();
            route();
        }
        return;
    case phase::relaying:
        if (draining_ && member_ && !topo.position(*member_)) {
            return;  // a reload took its member out of the set: the drain closes it at an idle point
        }
        if (member_ && !keeps_session(topo, listener(), role_, *member_)) {
            if (unanswered(from_server)) {
                // The client has seen nothing yet: it waits for the next member
                // rather than seeing its connection closed.
                return retry_unanswered("member lost its role before answering");
            }
            if (keeps_while_api_fails(topo, listener(), role_, *member_)) {
                return;  // its API hangs, its DCS key says it replicates: as it was (a drain goes on)
            }
            if (topo.fenced == *member_) {
                return fence();  // it may take its lock back
            }
            return close(close_reason::backend_down, fenced_ ? "member lost its lock for good" : "member lost its role");
        }
        if (fenced_) {
            if (!topo.keeps_write(*member_)) {
                // Kept by another role (`any`: a replica now): what it said
                // while it had no lock must not reach the client.
                return close(close_reason::backend_down, "member lost its lock for good");
            }
            unfence();  // it leads again
            if (phase_ != phase::relaying) {
                return;
            }
        }
        if (member_ && (!draining_ || soft_drain_)) {
            // Out of the class for a reason that leaves it safe (lag, tags,
            // weight): closed where it is idle, never cut for it, and kept
            // if the member comes back first.
            auto why = drain_reason(topo, listener(), role_, *member_);
            if (why.empty() && soft_drain_) {
                undrain();
            } else if (!why.empty() && !draining_) {
                soft_drain(std::move(why));
            }
        }
        return;
    default:
        return;
    }
}

// HAProxy's abortonclose: a client that hung up while held must not reach a
// member later (a burst of forks on a freshly promoted leader). A PostgreSQL
// client never half-closes while it waits for its answer.
bool session::left_while_waiting(side s) {
    if (s != from_client || !peer_finished_[from_client]) {
        return false;
    }
    close(close_reason::client_abort, "left while waiting for a member");
    return true;
}

}  // namespace patroxy::proxy
