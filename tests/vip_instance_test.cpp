// The VRRP instance without a usable interface: it stays off, says why, and
// touches nothing (the proxy runs on).

#include "vip/vrrp_instance.hpp"

#include <catch2/catch.hpp>

using namespace patroxy;

TEST_CASE("a VIP on a missing interface stays off and says why", "[vip]") {
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
    CHECK(!s.running);
    CHECK(s.address == "10.213.9.100/24");
    // Without root the capabilities are missing first; with them, the interface.
    const bool says_why = s.off_reason.find("ptx-missing0") != std::string::npos ||
                          s.off_reason.find("CAP_NET_") != std::string::npos;
    CHECK(says_why);
    instance.shutdown();  // harmless when off
}

TEST_CASE("a disabled VIP reports that it is disabled", "[vip]") {
    boost::asio::io_context ioc;
    conf::vip_config cfg;  // enabled = false
    vip::vrrp_instance instance(ioc, cfg, 7000, [] { return std::string{}; });
    instance.start();
    CHECK(!instance.status().running);
    CHECK(instance.status().off_reason == "disabled in the configuration");
}
