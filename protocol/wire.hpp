#pragma once
// Shared vocabulary of the PostgreSQL wire decoders: a decoder takes bytes and
// returns {status, bytes consumed, value, why}. It never blocks, logs or throws;
// `why` is a static string for logs and close reasons.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace patroxy::protocol {

/// Outcome of one decode attempt over the bytes seen so far.
enum class status { complete, need_more, bad };

template <class T>
struct decoded {
    status st = status::need_more;
    std::size_t consumed = 0;   ///< bytes that make up the message when complete
    T value{};
    std::string_view why;       ///< set when bad
};

using bytes = std::span<const std::uint8_t>;

/// Big-endian Int32 as the protocol sends it. Caller checks the size.
inline std::uint32_t read_u32(bytes in, std::size_t at) {
    return (std::uint32_t{in[at]} << 24) | (std::uint32_t{in[at + 1]} << 16) | (std::uint32_t{in[at + 2]} << 8) |
           std::uint32_t{in[at + 3]};
}

}  // namespace patroxy::protocol
