#pragma once
// VRRPv3 advertisements for IPv4 (RFC 5798 section 5), encoded and checked
// without I/O. The checker returns a reason and never logs: the receive path
// counts drop reasons instead of logging each forged or stray packet.
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |(rsvd) |     Max Adver Int     |          Checksum             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                      IPv4 Address(es)                         |

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace patroxy::vip {

inline constexpr std::uint8_t vrrp_protocol = 112;          // RFC 5798 5.1.1.4: IP protocol number
inline constexpr std::uint32_t vrrp_multicast = 0xE0000012; // 224.0.0.18, RFC 5798 5.1.1.2
inline constexpr int vrrp_ttl = 255;                         // 5.1.1.3: TTL MUST be 255
inline constexpr std::uint8_t vrrp_version = 3;              // 5.2.1
inline constexpr std::uint8_t vrrp_advertisement = 1;        // 5.2.2: the only type
inline constexpr std::size_t vrrp_header_size = 8;

/// An advertisement's fields. Addresses are IPv4 in host byte order.
struct advert {
    std::uint8_t vrid = 0;
    std::uint8_t priority = 0;
    std::uint16_t max_advert_int_cs = 100;   ///< 12 bits, centiseconds (5.2.7)
    std::vector<std::uint32_t> addresses;
};

/// Why a received packet was dropped (the stats label), or none.
enum class drop_reason { none, bad_ttl, too_short, bad_version, bad_type, wrong_vrid, bad_address_count, bad_checksum,
                         zero_interval };

std::string_view to_string(drop_reason r);

/// The VRRP payload (no IP header) with a checksum over the IPv4 pseudo-header,
/// as keepalived sends for v3 by default. `src`/`dst` are host-order IPv4.
std::vector<std::uint8_t> encode_advert(const advert& a, std::uint32_t src, std::uint32_t dst);

/// A check of one received packet.
struct checked_advert {
    drop_reason reason = drop_reason::none;
    advert value;
    bool pseudo_header_checksum = false;  ///< which checksum form it used
};

/// RFC 5798 7.1: TTL 255, version 3, type advertisement, our VRID, a length
/// that holds `count` addresses, a valid checksum (with the IPv4 pseudo-header
/// as keepalived computes it, or without it as RFC 9568 says: both are taken).
checked_advert check_advert(std::span<const std::uint8_t> payload, int ttl, std::uint32_t src, std::uint32_t dst,
                            std::uint8_t vrid);

/// RFC 1071 one's complement sum folded to 16 bits (not yet complemented).
std::uint32_t ones_complement_sum(std::span<const std::uint8_t> data, std::uint32_t sum = 0);

}  // namespace patroxy::vip
