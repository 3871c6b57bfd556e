// The VRRP instance without a usable interface: without the capabilities it
// stays off and says why; with them it is in FAULT, touches nothing, and
// starts once the interface is there (the proxy runs on either way). The
// interface tests run in a network namespace of their own (root only), on a
// thread of their own, so the host's interfaces are never touched.

#include "vip/vrrp_instance.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <functional>
#include <thread>

using namespace patroxy;
using namespace std::chrono_literals;

namespace {

// Runs `body` on a thread that moved into a new network namespace (its
// sockets and the `ip` commands it runs live there); false when the process
// may not create one (not root).
bool in_own_netns(const std::function<void()>& body) {
    bool entered = false;
    std::exception_ptr failure;
    std::thread t([&] {
        if (::unshare(CLONE_NEWNET) != 0) {
            return;
        }
        entered = true;
        try {
            body();
        } catch (...) {
            failure = std::current_exception();
        }
    });
    t.join();
    if (failure) {
        std::rethrow_exception(failure);
    }
    return entered;
}

conf::vip_config veth_vip() {
    conf::vip_config cfg;
    cfg.enabled = true;
    cfg.interface = "ptx-veth0";
    cfg.address = "10.213.9.100";
    cfg.prefix = 24;
    cfg.advert_interval = 100ms;
    cfg.peer_probe_interval = 0ms;
    return cfg;
}

// Runs the instance's io_context until `done` or `limit`.
bool run_until(boost::asio::io_context& ioc, const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < until) {
        ioc.restart();
        ioc.run_for(20ms);
    }
    return done();
}

bool sh(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

constexpr const char* make_veth =
    "ip link add ptx-veth0 type veth peer name ptx-veth1 && ip link set ptx-veth1 up && ip link set ptx-veth0 up";

}  // namespace

TEST_CASE("a VIP on a missing interface is in FAULT (or off without the capabilities) and says why", "[vip]") {
    boost::asio::io_context ioc;
    conf::vip_config cfg;
    cfg.enabled = true;
    cfg.interface = "ptx-missing0";
    cfg.address = "10.213.9.100";
    cfg.prefix = 24;
    vip::vrrp_instance instance(ioc, cfg, 7000, [] { return std::string{}; });
    instance.start();
    ioc.run_for(std::chrono::milliseconds(50));
    const auto s = instance.status();
    CHECK(s.address == "10.213.9.100/24");
    if (!vip::missing_capabilities().empty()) {
        CHECK(!s.running);
        CHECK(s.off_reason.find("CAP_NET_") != std::string::npos);
    } else {
        // It waits for the interface: FAULT, never master, and says which.
        CHECK(s.running);
        CHECK(s.state == vip::vrrp_state::fault);
        CHECK(s.unhealthy_reason.find("ptx-missing0") != std::string::npos);
    }
    instance.shutdown();  // harmless when off
}

TEST_CASE("a disabled VIP reports that it is disabled", "[vip]") {
    boost::asio::io_context ioc;
    conf::vip_config cfg;  // enabled = false
    vip::vrrp_instance instance(ioc, cfg, 7000, [] { return std::string{}; });
    instance.start();
    CHECK(!instance.status().running);
    CHECK(instance.status().off_reason == "disabled in the configuration");
    vip::vrrp_handover master_of_it;
    master_of_it.state = vip::vrrp_state::master;
    master_of_it.interface = cfg.interface;
    master_of_it.address = cfg.address;
    master_of_it.prefix = cfg.prefix;
    master_of_it.virtual_router_id = cfg.virtual_router_id;
    CHECK(!instance.adoptable(master_of_it));  // an upgrade to a configuration without the VIP
}

TEST_CASE("a VIP whose interface appears after start leaves FAULT once it has an address", "[vip]") {
    struct seen {
        vip::vip_status at_start, without_address, after;
        bool vip_added = false;
    } o;
    const bool ran = in_own_netns([&] {
        boost::asio::io_context ioc;
        vip::vrrp_instance instance(ioc, veth_vip(), 7000, [] { return std::string{}; });
        instance.start();
        ioc.run_for(100ms);
        o.at_start = instance.status();
        if (!sh(make_veth)) {
            throw std::runtime_error("ip link add ... type veth failed");
        }
        run_until(ioc, [&] { return instance.status().unhealthy_reason.find("IPv4") != std::string::npos; }, 2s);
        o.without_address = instance.status();
        sh("ip addr add 10.213.9.1/24 dev ptx-veth0");
        run_until(ioc, [&] { return instance.status().state == vip::vrrp_state::master; }, 3s);
        o.after = instance.status();
        o.vip_added = vip::has_address("ptx-veth0", *vip::parse_ipv4("10.213.9.100"));
        instance.shutdown();
    });
    if (!ran || !vip::missing_capabilities().empty()) {
        WARN("needs root (a network namespace and CAP_NET_RAW/CAP_NET_ADMIN): skipped");
        return;
    }
    CHECK(o.at_start.running);
    CHECK(o.at_start.state == vip::vrrp_state::fault);
    CHECK(o.at_start.unhealthy_reason.find("does not exist") != std::string::npos);
    CHECK(o.without_address.state == vip::vrrp_state::fault);
    CHECK(o.without_address.unhealthy_reason.find("IPv4") != std::string::npos);
    // No peer: backup, then master after Master_Down_Interval, with the VIP.
    CHECK(o.after.state == vip::vrrp_state::master);
    CHECK(o.after.adverts_sent > 0);
    CHECK(o.vip_added);
}

TEST_CASE("VRRP sockets that failed to open are opened again on the next link event, FAULT meanwhile", "[vip]") {
    struct seen {
        vip::vip_status failed, after;
    } o;
    const bool ran = in_own_netns([&] {
        boost::asio::io_context ioc;
        vip::vrrp_instance instance(ioc, veth_vip(), 7000, [] { return std::string{}; });
        instance.start();  // no interface yet: FAULT, no sockets
        ioc.run_for(50ms);
        // The interface and its address appear while the loop is not running:
        // the link events wait on the watch socket.
        if (!sh(make_veth) || !sh("ip addr add 10.213.9.1/24 dev ptx-veth0")) {
            throw std::runtime_error("ip link add ... type veth failed");
        }
        // One descriptor to spare: the look-ups (one socket at a time) work,
        // the second VRRP socket does not.
        rlimit was{};
        ::getrlimit(RLIMIT_NOFILE, &was);
        const int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // the lowest free descriptor
        ::close(spare);
        rlimit tight = was;
        tight.rlim_cur = static_cast<rlim_t>(spare + 1);
        ::setrlimit(RLIMIT_NOFILE, &tight);
        run_until(ioc, [&] { return instance.status().unhealthy_reason.find("VRRP") != std::string::npos; }, 2s);
        ioc.run_for(200ms);
        ::setrlimit(RLIMIT_NOFILE, &was);
        o.failed = instance.status();
        // A link event that changes neither index, address nor MAC.
        sh("ip link set ptx-veth0 mtu 1400");
        run_until(ioc, [&] {
            const auto s = instance.status();
            return s.state == vip::vrrp_state::master && s.adverts_sent > 0;
        }, 3s);
        o.after = instance.status();
        instance.shutdown();
    });
    if (!ran || !vip::missing_capabilities().empty()) {
        WARN("needs root (a network namespace and CAP_NET_RAW/CAP_NET_ADMIN): skipped");
        return;
    }
    INFO("after the failed open: " << o.failed.unhealthy_reason);
    CHECK(o.failed.state == vip::vrrp_state::fault);
    CHECK(o.failed.unhealthy_reason.find("VRRP send socket") != std::string::npos);
    // Sockets open again: adverts go out (without them it would be a master that sends nothing).
    CHECK(o.after.state == vip::vrrp_state::master);
    CHECK(o.after.adverts_sent > 0);
}

TEST_CASE("an upgrade adopts only the same VIP, and one not adopted is removed by the process that held it", "[vip]") {
    struct seen {
        bool same = false, other_address = false, other_vrid = false, other_prefix = false, other_interface = false,
             not_master = false;
        bool vip_after_hand_over = false, vip_after_release = false;
        vip::vrrp_state state_after_release = vip::vrrp_state::master;
        std::uint64_t adverts_before = 0, adverts_after = 0;
    } o;
    const bool ran = in_own_netns([&] {
        if (!sh(make_veth) || !sh("ip addr add 10.213.9.1/24 dev ptx-veth0")) {
            throw std::runtime_error("ip link add ... type veth failed");
        }
        boost::asio::io_context ioc;
        vip::vrrp_instance instance(ioc, veth_vip(), 7000, [] { return std::string{}; });
        instance.start();
        run_until(ioc, [&] { return instance.status().state == vip::vrrp_state::master; }, 3s);
        const auto handed = instance.hand_over();
        o.vip_after_hand_over = vip::has_address("ptx-veth0", *vip::parse_ipv4("10.213.9.100"));
        // What a next process with the same configuration would decide.
        boost::asio::io_context next_ioc;
        vip::vrrp_instance next(next_ioc, veth_vip(), 7000, [] { return std::string{}; });
        auto h = handed;
        o.same = next.adoptable(h);
        h = handed;
        h.address = "10.213.9.101";
        o.other_address = next.adoptable(h);
        h = handed;
        h.virtual_router_id = 52;
        o.other_vrid = next.adoptable(h);
        h = handed;
        h.prefix = 25;
        o.other_prefix = next.adoptable(h);
        h = handed;
        h.interface = "ptx-veth1";
        o.other_interface = next.adoptable(h);
        h = handed;
        h.state = vip::vrrp_state::backup;
        o.not_master = next.adoptable(h);
        // The next process did not adopt: the one that held the VIP lets it go.
        o.adverts_before = instance.status().adverts_sent;
        instance.release_handed_over(handed);
        o.adverts_after = instance.status().adverts_sent;
        o.vip_after_release = vip::has_address("ptx-veth0", *vip::parse_ipv4("10.213.9.100"));
        o.state_after_release = instance.status().state;
    });
    if (!ran || !vip::missing_capabilities().empty()) {
        WARN("needs root (a network namespace and CAP_NET_RAW/CAP_NET_ADMIN): skipped");
        return;
    }
    CHECK(o.vip_after_hand_over);  // handed over: the VIP stays for the next process
    CHECK(o.same);
    CHECK(!o.other_address);
    CHECK(!o.other_vrid);
    CHECK(!o.other_prefix);
    CHECK(!o.other_interface);
    CHECK(!o.not_master);
    CHECK(o.adverts_after == o.adverts_before + 1);  // the priority-0 advert
    CHECK(!o.vip_after_release);
    CHECK(o.state_after_release != vip::vrrp_state::master);
}
