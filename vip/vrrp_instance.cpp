#include "vip/vrrp_instance.hpp"

#include "base/log.hpp"
#include "base/text.hpp"
#include "vip/vrrp_packet.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace patroxy::vip {

namespace net = boost::asio;
using error_code = boost::system::error_code;
using clock = std::chrono::steady_clock;

namespace {

vrrp_machine::settings machine_settings(const conf::vip_config& cfg) {
    vrrp_machine::settings s;
    s.priority = cfg.priority;
    s.advert_interval = std::chrono::duration_cast<vrrp_machine::centiseconds>(cfg.advert_interval);
    s.preempt = cfg.preempt;
    s.preempt_delay = cfg.preempt_delay;
    return s;
}

// "10.0.0.100/24" -> address and prefix (validated by conf already).
std::uint32_t address_part(const std::string& text) {
    return parse_ipv4(text.substr(0, text.find('/'))).value_or(0);
}

int set_int(int fd, int level, int name, int value) { return ::setsockopt(fd, level, name, &value, sizeof value); }

constexpr auto health_tick = std::chrono::milliseconds{250};

}  // namespace

vrrp_instance::vrrp_instance(net::io_context& ioc, const conf::vip_config& cfg, std::uint16_t stats_port,
                             health_check health)
    : ioc_(ioc),
      cfg_(cfg),
      stats_port_(stats_port),
      health_(std::move(health)),
      machine_(machine_settings(cfg)),
      receiver_(ioc),
      timer_(ioc),
      garp_timer_(ioc),
      health_timer_(ioc),
      probe_timer_(ioc),
      probe_(ioc),
      link_watch_(ioc) {
    vip_ = address_part(cfg.address);
    for (const auto& p : cfg.unicast_peers) {
        peers_.push_back(parse_ipv4(p).value_or(0));
    }
    status_.address = cfg.address + "/" + std::to_string(cfg.prefix);
    status_.interface = cfg.interface;
    status_.priority = status_.effective_priority = cfg.priority;
    status_.off_reason = cfg.enabled ? "not started" : "disabled in the configuration";
    publish();
}

vrrp_instance::~vrrp_instance() { close_sockets(); }

void vrrp_instance::publish() {
    const std::lock_guard lock(published_mutex_);
    published_ = status_;
}

vrrp_handover vrrp_instance::hand_over() {
    vrrp_handover out;
    out.interface = cfg_.interface;
    out.address = cfg_.address;
    out.prefix = cfg_.prefix;
    out.virtual_router_id = cfg_.virtual_router_id;
    if (!status_.running || stopped_) {
        return out;
    }
    out.state = machine_.state();
    if (out.state == vrrp_state::master) {
        send_advert(machine_.priority());  // fresh: the next process's first one follows within milliseconds
    }
    stopped_ = true;
    error_code ignored;
    timer_.cancel();
    garp_timer_.cancel();
    health_timer_.cancel();
    probe_timer_.cancel();
    probe_.close(ignored);
    link_watch_.close(ignored);
    close_sockets();
    status_.running = false;
    status_.off_reason = "handed over to the next process (upgrade)";
    publish();
    return out;
}

bool vrrp_instance::adoptable(const vrrp_handover& h) const {
    if (h.state != vrrp_state::master || !cfg_.enabled || h.interface != cfg_.interface ||
        h.address != cfg_.address || h.prefix != cfg_.prefix || h.virtual_router_id != cfg_.virtual_router_id) {
        return false;
    }
    std::string why;
    return missing_capabilities().empty() && find_interface(cfg_.interface, vip_, why).has_value();
}

void vrrp_instance::release_handed_over(const vrrp_handover& h) {
    if (h.state != vrrp_state::master) {
        return;
    }
    std::string why;
    if (open_sockets(why)) {
        send_advert(0);  // RFC 5798 6.4.3: the backup takes over after Skew_Time
    } else {
        PATROXY_LOG(warn, "vip") << why << ": no priority-0 advert, the backup takes over after Master_Down_Interval";
    }
    close_sockets();
    if (delete_address(link_.index, vip_, cfg_.prefix, why)) {
        PATROXY_LOG(warn, "vip") << "the next process does not take the VIP over: " << status_.address
                                 << " removed from " << link_.name << ", the backup takes it";
    } else {
        PATROXY_LOG(error, "vip") << why;
    }
    status_.state = vrrp_state::initialize;
    publish();
}

void vrrp_instance::reconfigure(const conf::vip_config& next) {
    const bool same_identity = next.enabled == cfg_.enabled && next.interface == cfg_.interface &&
                               next.address == cfg_.address && next.prefix == cfg_.prefix &&
                               next.virtual_router_id == cfg_.virtual_router_id &&
                               next.unicast_peers == cfg_.unicast_peers;
    if (!same_identity) {
        PATROXY_LOG(info, "vip") << "the VIP's address, interface, VRID or peers changed: resigning, then starting "
                                    "with the new ones";
        shutdown();
        close_sockets();
        cfg_ = next;
        vip_ = address_part(cfg_.address);
        peers_.clear();
        for (const auto& p : cfg_.unicast_peers) {
            peers_.push_back(parse_ipv4(p).value_or(0));
        }
        peers_with_patroxy_.clear();
        link_ = {};
        link_fault_.clear();
        add_fault_.clear();
        status_ = {};
        status_.address = cfg_.address + "/" + std::to_string(cfg_.prefix);
        status_.interface = cfg_.interface;
        status_.priority = status_.effective_priority = cfg_.priority;
        status_.off_reason = cfg_.enabled ? "not started" : "disabled in the configuration";
        publish();
        return start();
    }
    cfg_ = next;
    status_.priority = cfg_.priority;
    if (!status_.running || stopped_) {
        return publish();
    }
    auto settings = machine_settings(cfg_);
    settings.primary_address = link_.primary;
    apply(machine_.reconfigure(clock::now(), settings, priority_for(unhealthy_)), "reload");
}

vip_status vrrp_instance::status() const {
    const std::lock_guard lock(published_mutex_);
    return published_;
}

void vrrp_instance::off(std::string why) {
    status_.running = false;
    status_.off_reason = std::move(why);
    PATROXY_LOG(warn, "vip") << "virtual IP " << status_.address << " is off: " << status_.off_reason
                             << " (patroxy proxies on without it)";
    publish();
}

std::string vrrp_instance::fault() const { return !link_fault_.empty() ? link_fault_ : add_fault_; }

int vrrp_instance::priority_for(const std::string& unhealthy_reason) const {
    if (!fault().empty()) {
        return 0;  // FAULT: this host cannot hold the VIP now
    }
    if (unhealthy_reason.empty()) {
        return cfg_.priority;
    }
    return cfg_.track_weight == 0 ? 0 : std::max(1, cfg_.priority - cfg_.track_weight);  // 0: FAULT
}

void vrrp_instance::start(std::optional<vrrp_handover> adopt) {
    stopped_ = false;
    if (!cfg_.enabled) {
        return;
    }
    if (auto missing = missing_capabilities(); !missing.empty()) {
        return off(missing + " for VRRP (raw sockets) and the address (netlink)");
    }
    std::string why;
    const auto link = find_interface(cfg_.interface, vip_, why);
    auto settings = machine_settings(cfg_);
    link_ = {};
    if (link) {
        link_ = *link;
        settings.primary_address = link_.primary;
    }
    machine_ = vrrp_machine(settings);
    sockets_ok_ = link && open_sockets(why);
    if (!sockets_ok_) {
        // The interface is missing, has no address yet, or the sockets did
        // not open: FAULT, and the link watch (or the retry in track_health)
        // starts VRRP once the interface is there with an address.
        close_sockets();
        link_fault_ = why;
        PATROXY_LOG(error, "vip") << why << ": FAULT, this host must not hold " << status_.address
                                  << " until the interface is usable";
    }
    const bool adopting = sockets_ok_ && adopt && adopt->state == vrrp_state::master;
    // Left by a run that was killed, or by an upgrade's previous process for
    // us to adopt when we cannot: we are not master yet. (Adopting, this one
    // is master at once and the address stays.)
    if (link && !adopting) {
        remove_stale_address();
    }
    status_.running = true;
    status_.off_reason.clear();
    watch_links();
    unhealthy_ = health_();
    status_.unhealthy_reason = fault().empty() ? unhealthy_ : fault();
    const int priority = priority_for(unhealthy_);
    PATROXY_LOG(info, "vip") << "VRRPv3 vrid " << cfg_.virtual_router_id << " on " << cfg_.interface << " from "
                             << ipv4_text(link_.primary) << ", VIP " << status_.address << ", priority " << priority
                             << ", advert every " << cfg_.advert_interval.count() << "ms, "
                             << (peers_.empty() ? "multicast 224.0.0.18" : "unicast to " + std::to_string(peers_.size()) + " peer(s)");
    if (adopting) {
        PATROXY_LOG(info, "vip") << "taking over as master from the previous process (upgrade): the VIP stays";
        apply(machine_.adopt_master(clock::now(), priority), "upgrade");
    } else {
        apply(machine_.start(clock::now(), priority), "start");
    }
    if (sockets_ok_) {
        wait_for_adverts();
    }
    track_health();
    probe_master();
    check_link("start");
}

void vrrp_instance::remove_stale_address() {
    std::string why;
    if (!has_address(link_.name, vip_)) {
        return;
    }
    if (delete_address(link_.index, vip_, cfg_.prefix, why)) {
        PATROXY_LOG(warn, "vip") << "removed " << ipv4_text(vip_) << " from " << link_.name
                                 << ": left by an earlier run; it returns when this host is master";
    } else {
        PATROXY_LOG(error, "vip") << why;
    }
}

void vrrp_instance::close_sockets() {
    sockets_ok_ = false;
    error_code ignored;
    receiver_.close(ignored);
    if (send_fd_ >= 0) {
        ::close(send_fd_);
        send_fd_ = -1;
    }
}

void vrrp_instance::watch_links() {
    std::string why;
    const int fd = open_link_watch(why);
    if (fd < 0) {
        PATROXY_LOG(warn, "vip") << why << ": interface changes are noticed only when sending fails";
        return;
    }
    link_watch_.assign(fd);
    wait_for_link_events();
}

// One socket for the whole run: events that came while we looked are queued
// on it, none falls between two sockets.
void vrrp_instance::wait_for_link_events() {
    link_watch_.async_wait(net::posix::stream_descriptor::wait_read, [this](error_code ec) {
        if (ec || stopped_) {
            return;
        }
        // Drain: the content only says something changed; the interface is read again by name.
        std::uint8_t scratch[8192];
        for (int i = 0; i < 64 && ::recv(link_watch_.native_handle(), scratch, sizeof scratch, 0) > 0; ++i) {
        }
        check_link("link event");
        wait_for_link_events();
    });
}

void vrrp_instance::check_link(std::string_view cause) {
    if (stopped_) {
        return;
    }
    std::string why;
    auto link = find_interface(cfg_.interface, vip_, why);
    if (link && !interface_up(link->name, why)) {
        link.reset();
    }
    if (!link) {
        if (link_fault_ != why) {
            PATROXY_LOG(error, "vip") << why << ": FAULT, this host must not hold " << status_.address;
            link_fault_ = why;
            refresh_priority();
        }
        return;
    }
    const bool changed = link->index != link_.index || link->primary != link_.primary || link->mac != link_.mac;
    if (changed || !sockets_ok_) {
        // Recreated (a new index), or a new primary address: sockets bound to
        // the old ones are useless. Or the last open failed: try again, even
        // if the interface looks the same as then.
        if (changed) {
            PATROXY_LOG(warn, "vip") << "interface " << link->name << " changed (index " << link_.index << " -> "
                                     << link->index << ", " << ipv4_text(link_.primary) << " -> "
                                     << ipv4_text(link->primary) << "; " << cause
                                     << "): opening the VRRP sockets again";
        }
        close_sockets();
        const bool first = link_.index == 0;  // missing (or without an address) at start
        link_ = *link;
        sockets_ok_ = open_sockets(why);
        if (!sockets_ok_) {
            close_sockets();
            if (link_fault_ != why) {
                PATROXY_LOG(error, "vip") << why << ": FAULT until the VRRP sockets open";
                link_fault_ = why;
                refresh_priority();
            }
            return;
        }
        if (machine_.state() == vrrp_state::fault) {
            // Nothing to keep in FAULT: start afresh from our new primary
            // address (adverts' source and the tie-breaker), still in FAULT
            // until the priority is refreshed below.
            auto settings = machine_settings(cfg_);
            settings.primary_address = link_.primary;
            machine_ = vrrp_machine(settings);
            machine_.start(clock::now(), 0);
        }
        if (first && machine_.state() != vrrp_state::master) {
            remove_stale_address();
        }
        wait_for_adverts();
    }
    if (!link_fault_.empty()) {
        PATROXY_LOG(info, "vip") << "interface " << link_.name << " is usable again (" << cause << ")";
        link_fault_.clear();
        refresh_priority();
    }
}

void vrrp_instance::refresh_priority() {
    const int priority = priority_for(unhealthy_);
    const auto why = fault();
    status_.unhealthy_reason = !why.empty() ? why : unhealthy_;
    if (priority != machine_.priority()) {
        apply(machine_.set_priority(clock::now(), priority), !why.empty() ? why : unhealthy_.empty() ? "healthy again" : unhealthy_);
    } else {
        publish();
    }
}

bool vrrp_instance::open_sockets(std::string& why) {
    const int rx = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, vrrp_protocol);
    if (rx < 0) {
        why = errno_text("VRRP receive socket");
        return false;
    }
    receiver_.assign(rx);
    send_fd_ = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, vrrp_protocol);
    if (send_fd_ < 0) {
        why = errno_text("VRRP send socket");
        return false;
    }
    for (const int fd : {rx, send_fd_}) {
        if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, link_.name.c_str(),
                         static_cast<socklen_t>(link_.name.size())) != 0) {
            why = errno_text("binding the VRRP sockets to the interface");
            return false;
        }
    }
    if (peers_.empty()) {
        ip_mreqn group{};
        group.imr_multiaddr.s_addr = htonl(vrrp_multicast);
        group.imr_ifindex = link_.index;
        if (::setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
            why = errno_text("joining 224.0.0.18");
            return false;
        }
        ip_mreqn out{};
        out.imr_ifindex = link_.index;
        ::setsockopt(send_fd_, IPPROTO_IP, IP_MULTICAST_IF, &out, sizeof out);
    }
    // RFC 5798 5.1.1.3: TTL 255, so receivers can tell the packet was not routed.
    set_int(send_fd_, IPPROTO_IP, IP_MULTICAST_TTL, vrrp_ttl);
    set_int(send_fd_, IPPROTO_IP, IP_TTL, vrrp_ttl);
    set_int(send_fd_, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
    // The advert's source is our primary address (also in its checksum).
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(link_.primary);
    if (::bind(send_fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
        why = errno_text("binding the VRRP send socket to the primary address");
        return false;
    }
    return true;
}

void vrrp_instance::apply(const vrrp_actions& actions, std::string_view cause) {
    const auto before = status_.state;
    bool add_failed = false;
    for (const auto& a : actions) {
        std::string why;
        switch (a.what) {
        case vrrp_action::send_advert:
            send_advert(a.priority);
            break;
        case vrrp_action::add_vip:
            if (!add_address(link_.index, vip_, cfg_.prefix, why)) {
                // A master without its address would only keep the backup from
                // taking it: stand down and try again after a back-off.
                add_fault_ = "cannot add the VIP: " + why;
                add_retry_at_ = clock::now() + add_back_off_;
                PATROXY_LOG(error, "vip") << add_fault_ << ": FAULT for " << add_back_off_.count() << "ms";
                add_back_off_ = std::min(add_back_off_ * 2, std::chrono::milliseconds{30'000});
                add_failed = true;
            } else {
                add_back_off_ = std::chrono::milliseconds{1000};
            }
            break;
        case vrrp_action::remove_vip:
            garps_left_ = 0;
            garp_timer_.cancel();
            if (!delete_address(link_.index, vip_, cfg_.prefix, why)) {
                PATROXY_LOG(error, "vip") << why;
            }
            break;
        case vrrp_action::send_garps:
            garps_left_ = cfg_.garp_count;
            next_garp();
            break;
        }
    }
    status_.state = machine_.state();
    status_.effective_priority = machine_.priority();
    status_.master = machine_.master_address() ? ipv4_text(*machine_.master_address()) : "";
    if (status_.state != before) {
        ++status_.transitions;
        status_.last_transition = std::chrono::system_clock::now();
        PATROXY_LOG(info, "vip") << "VRRP " << to_string(before) << " -> " << to_string(status_.state) << " ("
                                 << base::printable(cause) << ")"
                                 << (status_.state == vrrp_state::master ? ": " + status_.address + " is here" : "");
    }
    arm_timer();
    if (add_failed) {
        return refresh_priority();  // to FAULT: resigns (priority 0) and removes what may be there
    }
    publish();
}

void vrrp_instance::send_advert(int priority) {
    advert a;
    a.vrid = static_cast<std::uint8_t>(cfg_.virtual_router_id);
    a.priority = static_cast<std::uint8_t>(priority);
    a.max_advert_int_cs = static_cast<std::uint16_t>(cfg_.advert_interval.count() / 10);
    a.addresses = {vip_};
    const auto send_to = [&](std::uint32_t dst) {
        const auto bytes = encode_advert(a, link_.primary, dst);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(dst);
        // One line when sending starts failing (link down) and one when it works again.
        if (::sendto(send_fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
            if (!send_failing_) {
                PATROXY_LOG(warn, "vip") << errno_text("sending adverts") << " (logged once until it works again)";
            }
            send_failing_ = true;
        } else {
            if (send_failing_) {
                PATROXY_LOG(info, "vip") << "sending adverts works again";
            }
            send_failing_ = false;
            ++status_.adverts_sent;
        }
    };
    if (peers_.empty()) {
        send_to(vrrp_multicast);
    } else {
        for (const auto p : peers_) {
            send_to(p);
        }
    }
}

void vrrp_instance::next_garp() {
    if (garps_left_ <= 0 || machine_.state() != vrrp_state::master) {
        return;
    }
    --garps_left_;
    std::string why;
    if (!send_gratuitous_arp(link_, vip_, why) && !send_failing_) {
        PATROXY_LOG(warn, "vip") << why;
    }
    garp_timer_.expires_after(cfg_.garp_interval);
    garp_timer_.async_wait([this](error_code ec) {
        if (!ec) {
            next_garp();
        }
    });
}

void vrrp_instance::arm_timer() {
    const auto due = machine_.next_deadline();
    if (!due || stopped_) {
        timer_.cancel();
        return;
    }
    timer_.expires_at(*due);
    timer_.async_wait([this](error_code ec) {
        if (!ec) {
            apply(machine_.on_timer(clock::now()),
                  machine_.state() == vrrp_state::master ? "advert timer" : "no advert from a master within Master_Down_Interval");
        }
    });
}

void vrrp_instance::wait_for_adverts() {
    receiver_.async_wait(net::posix::stream_descriptor::wait_read, [this](error_code ec) {
        if (!ec && !stopped_) {
            receive_adverts();
        }
    });
}

// Reads until the socket is empty, 64 packets at a time so that a flood cannot
// hold the control thread; waits again only once drained (the reactor reports
// new arrivals, not packets still queued).
void vrrp_instance::receive_adverts() {
    std::uint8_t packet[1500];
    for (int i = 0; i < 64; ++i) {
        const auto n = ::recv(receiver_.native_handle(), packet, sizeof packet, 0);
        if (n <= 0) {
            publish();
            return wait_for_adverts();
        }
        on_packet(packet, static_cast<std::size_t>(n));
    }
    publish();
    net::post(ioc_, [this] {
        if (!stopped_) {
            receive_adverts();
        }
    });
}

void vrrp_instance::on_packet(const std::uint8_t* data, std::size_t n) {
    // A raw IPv4 socket hands us the IP header too.
    if (n < 20 || (data[0] >> 4) != 4 || static_cast<std::size_t>(data[0] & 0x0f) * 4 > n) {
        return drop("too_short");
    }
    const std::size_t header = static_cast<std::size_t>(data[0] & 0x0f) * 4;
    const int ttl = data[8];
    std::uint32_t src = 0;
    std::uint32_t dst = 0;
    std::memcpy(&src, data + 12, 4);
    std::memcpy(&dst, data + 16, 4);
    src = ntohl(src);
    dst = ntohl(dst);
    if (src == link_.primary) {
        return;  // our own
    }
    const auto checked = check_advert({data + header, n - header}, ttl, src, dst,
                                      static_cast<std::uint8_t>(cfg_.virtual_router_id));
    if (checked.reason != drop_reason::none) {
        return drop(to_string(checked.reason));
    }
    if (!peers_.empty() && std::find(peers_.begin(), peers_.end(), src) == peers_.end()) {
        return drop("not_a_peer");
    }
    ++status_.adverts_received;
    apply(machine_.on_advert(clock::now(), src, checked.value.priority,
                             vrrp_machine::centiseconds{checked.value.max_advert_int_cs}),
          "advert from " + ipv4_text(src) + " priority " + std::to_string(checked.value.priority));
    if (machine_.master_address() == src) {
        // The master speaks (checked after the step: this advert may have made
        // it our master): whatever its stats port says, it is alive.
        refusals_ = 0;
        last_master_advert_ = clock::now();
    }
}

void vrrp_instance::track_health() {
    if (stopped_) {
        return;
    }
    const auto reason = health_();
    if (reason != unhealthy_) {
        const bool was_healthy = unhealthy_.empty();
        unhealthy_ = reason;
        if (reason.empty()) {
            PATROXY_LOG(info, "vip") << "healthy again: priority back to " << cfg_.priority
                                     << (fault().empty() ? "" : " once the FAULT clears (" + fault() + ")");
        } else if (was_healthy) {
            const int p = priority_for(reason);
            PATROXY_LOG(warn, "vip") << reason << ": priority " << cfg_.priority << " -> " << p
                                     << (p == 0 ? " (FAULT: this host must not hold the VIP)" : "");
        }
        refresh_priority();
    }
    if (!sockets_ok_ && clock::now() >= sockets_retry_at_) {
        // A missed link event, or sockets that failed on a link that did not
        // change since: look again now and then.
        sockets_retry_at_ = clock::now() + std::chrono::seconds(1);
        check_link("retry");
    }
    if (!add_fault_.empty() && clock::now() >= add_retry_at_) {
        PATROXY_LOG(info, "vip") << "trying the VIP again after: " << add_fault_;
        add_fault_.clear();
        refresh_priority();
    }
    health_timer_.expires_after(health_tick);
    health_timer_.async_wait([this](error_code ec) {
        if (!ec) {
            track_health();
        }
    });
}

// The master's host refusing its stats port means its patroxy is gone while
// the host is up: take over now instead of after Master_Down_Interval. Only
// for a master whose stats port answered before (a keepalived peer has none),
// only when refusals repeat and the master has also fallen silent for 1.5 of
// its advert intervals (a REJECT rule or a full backlog refuses too, but the
// adverts of a live master keep coming), and a silent host (no answer at all)
// still waits for the RFC timer.
void vrrp_instance::probe_master() {
    if (stopped_ || cfg_.peer_probe_interval.count() == 0) {
        return;
    }
    const auto period = std::min<clock::duration>(
        cfg_.peer_probe_interval, std::chrono::duration_cast<clock::duration>(machine_.master_advert_interval()));
    const auto master = machine_.master_address();
    if (!probing_ && machine_.state() == vrrp_state::backup && master) {
        probing_ = true;
        error_code ignored;
        probe_.close(ignored);
        const net::ip::tcp::endpoint ep(net::ip::address_v4(*master), stats_port_);
        probe_.async_connect(ep, [this, target = *master](error_code ec) {
            probing_ = false;
            error_code ignored;
            probe_.close(ignored);
            if (stopped_ || ec == net::error::operation_aborted) {
                return;
            }
            if (!ec) {
                peers_with_patroxy_.insert(target);
                refusals_ = 0;
                return;
            }
            if (ec != net::error::connection_refused || peers_with_patroxy_.count(target) == 0 ||
                machine_.master_address() != target) {
                return;
            }
            ++refusals_;
            const auto now = clock::now();
            const auto needed = std::chrono::duration_cast<clock::duration>(machine_.master_advert_interval()) * 3 / 2;
            const auto silent = now - last_master_advert_;
            if (refusals_ >= 2 && silent >= needed) {
                PATROXY_LOG(warn, "vip") << "patroxy on master " << ipv4_text(target) << " refused its stats port "
                                         << stats_port_ << " " << refusals_ << " times and sent no advert for "
                                         << std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()
                                         << "ms: taking over now";
                refusals_ = 0;
                apply(machine_.on_master_dead(now), "the master's patroxy is gone (refused)");
                return;
            }
            // Look again right when the silence would be long enough.
            const auto wait = std::max<clock::duration>(needed - silent, std::chrono::milliseconds{20});
            probe_timer_.expires_after(std::min<clock::duration>(wait, cfg_.peer_probe_interval));
            probe_timer_.async_wait([this](error_code tec) {
                if (!tec) {
                    probe_master();
                }
            });
        });
    }
    probe_timer_.expires_after(period);
    probe_timer_.async_wait([this](error_code ec) {
        if (ec) {
            return;
        }
        if (probing_) {
            error_code ignored;
            probe_.close(ignored);  // no answer within the interval: a silent host, not a refusal
        }
        probe_master();
    });
}

void vrrp_instance::shutdown() {
    if (!status_.running || stopped_) {
        return;
    }
    apply(machine_.shutdown(clock::now()), "shutting down");
    stopped_ = true;
    error_code ignored;
    timer_.cancel();
    garp_timer_.cancel();
    health_timer_.cancel();
    probe_timer_.cancel();
    probe_.close(ignored);
    link_watch_.close(ignored);
    close_sockets();
    publish();
}

}  // namespace patroxy::vip
