#include "vip/vrrp_packet.hpp"

namespace patroxy::vip {
namespace {

std::uint32_t pseudo_header_sum(std::uint32_t src, std::uint32_t dst, std::size_t length) {
    // IPv4 pseudo-header: source, destination, zero, protocol, length.
    const std::uint8_t ph[12] = {static_cast<std::uint8_t>(src >> 24), static_cast<std::uint8_t>(src >> 16),
                                 static_cast<std::uint8_t>(src >> 8),  static_cast<std::uint8_t>(src),
                                 static_cast<std::uint8_t>(dst >> 24), static_cast<std::uint8_t>(dst >> 16),
                                 static_cast<std::uint8_t>(dst >> 8),  static_cast<std::uint8_t>(dst),
                                 0,
                                 vrrp_protocol,
                                 static_cast<std::uint8_t>(length >> 8),
                                 static_cast<std::uint8_t>(length)};
    return ones_complement_sum(ph);
}

std::uint16_t fold(std::uint32_t sum) {
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<std::uint16_t>(sum);
}

}  // namespace

std::uint32_t ones_complement_sum(std::span<const std::uint8_t> data, std::uint32_t sum) {
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2) {
        sum += (std::uint32_t{data[i]} << 8) | data[i + 1];
    }
    if (i < data.size()) {
        sum += std::uint32_t{data[i]} << 8;  // odd length: pad with zero
    }
    return fold(sum);
}

std::vector<std::uint8_t> encode_advert(const advert& a, std::uint32_t src, std::uint32_t dst) {
    std::vector<std::uint8_t> out;
    out.reserve(vrrp_header_size + 4 * a.addresses.size());
    out.push_back(static_cast<std::uint8_t>((vrrp_version << 4) | vrrp_advertisement));
    out.push_back(a.vrid);
    out.push_back(a.priority);
    out.push_back(static_cast<std::uint8_t>(a.addresses.size()));
    out.push_back(static_cast<std::uint8_t>((a.max_advert_int_cs >> 8) & 0x0f));  // top 4 bits reserved, zero
    out.push_back(static_cast<std::uint8_t>(a.max_advert_int_cs));
    out.push_back(0);  // checksum, filled below
    out.push_back(0);
    for (const auto addr : a.addresses) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            out.push_back(static_cast<std::uint8_t>(addr >> shift));
        }
    }
    const auto sum = ones_complement_sum(out, pseudo_header_sum(src, dst, out.size()));
    const auto checksum = static_cast<std::uint16_t>(~sum);
    out[6] = static_cast<std::uint8_t>(checksum >> 8);
    out[7] = static_cast<std::uint8_t>(checksum);
    return out;
}

checked_advert check_advert(std::span<const std::uint8_t> payload, int ttl, std::uint32_t src, std::uint32_t dst,
                            std::uint8_t vrid) {
    checked_advert r;
    // 7.1: "MUST verify that the IP TTL is 255" (a packet from off-link cannot have it).
    if (ttl != vrrp_ttl) {
        r.reason = drop_reason::bad_ttl;
        return r;
    }
    if (payload.size() < vrrp_header_size) {
        r.reason = drop_reason::too_short;
        return r;
    }
    if ((payload[0] >> 4) != vrrp_version) {
        r.reason = drop_reason::bad_version;
        return r;
    }
    if ((payload[0] & 0x0f) != vrrp_advertisement) {
        r.reason = drop_reason::bad_type;
        return r;
    }
    const std::size_t count = payload[3];
    if (count == 0 || payload.size() < vrrp_header_size + 4 * count) {
        r.reason = drop_reason::bad_address_count;
        return r;
    }
    // A valid checksum sums (with its own field) to 0xffff.
    const auto message = payload.first(vrrp_header_size + 4 * count);
    const bool with_ph = ones_complement_sum(message, pseudo_header_sum(src, dst, message.size())) == 0xffff;
    const bool without_ph = ones_complement_sum(message) == 0xffff;
    if (!with_ph && !without_ph) {
        r.reason = drop_reason::bad_checksum;
        return r;
    }
    r.pseudo_header_checksum = with_ph;
    // 7.1: "MUST verify that the VRID is configured on the receiving interface".
    if (payload[1] != vrid) {
        r.reason = drop_reason::wrong_vrid;
        return r;
    }
    r.value.vrid = payload[1];
    r.value.priority = payload[2];
    r.value.max_advert_int_cs = static_cast<std::uint16_t>(((payload[4] & 0x0f) << 8) | payload[5]);
    if (r.value.max_advert_int_cs == 0) {
        r.reason = drop_reason::zero_interval;
        return r;
    }
    for (std::size_t i = 0; i < count; ++i) {
        const auto at = vrrp_header_size + 4 * i;
        r.value.addresses.push_back((std::uint32_t{payload[at]} << 24) | (std::uint32_t{payload[at + 1]} << 16) |
                                    (std::uint32_t{payload[at + 2]} << 8) | payload[at + 3]);
    }
    return r;
}

std::string_view to_string(drop_reason r) {
    switch (r) {
    case drop_reason::none: return "none";
    case drop_reason::bad_ttl: return "bad_ttl";
    case drop_reason::too_short: return "too_short";
    case drop_reason::bad_version: return "bad_version";
    case drop_reason::bad_type: return "bad_type";
    case drop_reason::wrong_vrid: return "wrong_vrid";
    case drop_reason::bad_address_count: return "bad_address_count";
    case drop_reason::bad_checksum: return "bad_checksum";
    case drop_reason::zero_interval: return "zero_interval";
    }
    return "unknown";
}

}  // namespace patroxy::vip
