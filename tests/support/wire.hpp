#pragma once
// Hand-built PostgreSQL packets for tests.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace patroxy::testing {

using packet = std::vector<std::uint8_t>;

inline void put_u32(packet& p, std::uint32_t v) {
    p.push_back(static_cast<std::uint8_t>(v >> 24));
    p.push_back(static_cast<std::uint8_t>(v >> 16));
    p.push_back(static_cast<std::uint8_t>(v >> 8));
    p.push_back(static_cast<std::uint8_t>(v));
}

inline void patch_length(packet& p, std::size_t at) {
    const auto len = static_cast<std::uint32_t>(p.size() - at);
    p[at] = static_cast<std::uint8_t>(len >> 24);
    p[at + 1] = static_cast<std::uint8_t>(len >> 16);
    p[at + 2] = static_cast<std::uint8_t>(len >> 8);
    p[at + 3] = static_cast<std::uint8_t>(len);
}

inline packet make_startup(std::initializer_list<std::pair<std::string, std::string>> params,
                           std::uint32_t version = 3u << 16) {
    packet p(4, 0);
    put_u32(p, version);
    for (const auto& [k, v] : params) {
        p.insert(p.end(), k.begin(), k.end());
        p.push_back(0);
        p.insert(p.end(), v.begin(), v.end());
        p.push_back(0);
    }
    p.push_back(0);
    patch_length(p, 0);
    return p;
}

inline packet make_code_packet(std::uint32_t code) {
    packet p;
    put_u32(p, 8);
    put_u32(p, code);
    return p;
}

inline packet make_cancel(std::uint32_t pid, std::vector<std::uint8_t> key) {
    packet p(4, 0);
    put_u32(p, 80877102);
    put_u32(p, pid);
    p.insert(p.end(), key.begin(), key.end());
    patch_length(p, 0);
    return p;
}

}  // namespace patroxy::testing
