#include "vip/vrrp_packet.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace patroxy::vip;

namespace {
constexpr std::uint32_t src = 0xC0A80064;  // 192.168.0.100
constexpr std::uint32_t vip_addr = 0xC0A8006E;  // 192.168.0.110

advert seed_advert() {
    advert a;
    a.vrid = 51;
    a.priority = 101;
    a.max_advert_int_cs = 100;
    a.addresses = {vip_addr};
    return a;
}
}  // namespace

TEST_CASE("an advertisement has RFC 5798's layout", "[vip]") {
    const auto wire = encode_advert(seed_advert(), src, vrrp_multicast);
    REQUIRE(wire.size() == 12);
    CHECK(wire[0] == 0x31);  // version 3, type 1
    CHECK(wire[1] == 51);
    CHECK(wire[2] == 101);
    CHECK(wire[3] == 1);
    CHECK(wire[4] == 0x00);
    CHECK(wire[5] == 100);   // 1 s = 100 centiseconds
    CHECK(std::vector<std::uint8_t>(wire.begin() + 8, wire.end()) == std::vector<std::uint8_t>{192, 168, 0, 110});
}

TEST_CASE("the checksum covers the IPv4 pseudo-header, as keepalived computes it", "[vip]") {
    const auto wire = encode_advert(seed_advert(), src, vrrp_multicast);
    // Independent arithmetic: pseudo-header words plus message words, folded.
    std::uint32_t sum = 0xC0A8 + 0x0064 + 0xE000 + 0x0012 + 0x0070 + 0x000C;  // src, dst, 0|112, length 12
    sum += 0x3133 + 0x6501 + 0x0064 + 0xC0A8 + 0x006E;
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    const auto expected = static_cast<std::uint16_t>(~sum);
    CHECK(((wire[6] << 8) | wire[7]) == expected);
    const auto r = check_advert(wire, 255, src, vrrp_multicast, 51);
    CHECK(r.reason == drop_reason::none);
    CHECK(r.pseudo_header_checksum);
    CHECK(r.value.priority == 101);
    CHECK(r.value.max_advert_int_cs == 100);
    CHECK(r.value.addresses == std::vector<std::uint32_t>{vip_addr});
}

TEST_CASE("a checksum without the pseudo-header (RFC 9568) is accepted too", "[vip]") {
    auto wire = encode_advert(seed_advert(), src, vrrp_multicast);
    wire[6] = wire[7] = 0;
    const auto c = static_cast<std::uint16_t>(~ones_complement_sum(wire));
    wire[6] = static_cast<std::uint8_t>(c >> 8);
    wire[7] = static_cast<std::uint8_t>(c);
    const auto r = check_advert(wire, 255, src, vrrp_multicast, 51);
    CHECK(r.reason == drop_reason::none);
    CHECK(!r.pseudo_header_checksum);
}

TEST_CASE("forged and stray advertisements are dropped with a reason", "[vip]") {
    const auto good = encode_advert(seed_advert(), src, vrrp_multicast);
    CHECK(check_advert(good, 64, src, vrrp_multicast, 51).reason == drop_reason::bad_ttl);
    CHECK(check_advert(good, 255, src, vrrp_multicast, 52).reason == drop_reason::wrong_vrid);
    CHECK(check_advert(std::span(good).first(7), 255, src, vrrp_multicast, 51).reason == drop_reason::too_short);
    CHECK(check_advert(std::span(good).first(11), 255, src, vrrp_multicast, 51).reason == drop_reason::bad_address_count);
    auto flipped = good;
    flipped[2] ^= 0x01;
    CHECK(check_advert(flipped, 255, src, vrrp_multicast, 51).reason == drop_reason::bad_checksum);
    auto v2 = good;
    v2[0] = 0x21;
    CHECK(check_advert(v2, 255, src, vrrp_multicast, 51).reason == drop_reason::bad_version);
    auto type2 = good;
    type2[0] = 0x32;
    CHECK(check_advert(type2, 255, src, vrrp_multicast, 51).reason == drop_reason::bad_type);
    auto from_elsewhere = check_advert(good, 255, src + 1, vrrp_multicast, 51);  // pseudo-header mismatch
    CHECK(from_elsewhere.reason == drop_reason::bad_checksum);
}

TEST_CASE("random bytes never crash the checker", "[vip]") {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> size(0, 64);
    for (int i = 0; i < 20000; ++i) {
        std::vector<std::uint8_t> p(size(rng));
        for (auto& b : p) {
            b = static_cast<std::uint8_t>(byte(rng));
        }
        if (!p.empty()) {
            p[0] = 0x31;
        }
        const auto r = check_advert(p, 255, src, vrrp_multicast, p.size() > 1 ? p[1] : 0);
        CHECK(r.value.addresses.size() <= 255);
    }
}
