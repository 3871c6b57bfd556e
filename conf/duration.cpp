#include "conf/duration.hpp"

#include <charconv>
#include <cmath>
#include <string>

namespace patroxy::conf {
namespace {

// Splits "1.5s" into 1.5 and "s"; rejects signs, blanks and empty numbers.
std::optional<std::pair<double, std::string_view>> split_number(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) {
        ++i;
    }
    if (i == 0) {
        return std::nullopt;
    }
    // std::from_chars for double is in libstdc++ 12.
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + i, value);
    if (ec != std::errc{} || end != text.data() + i || !std::isfinite(value)) {
        return std::nullopt;
    }
    return std::pair{value, text.substr(i)};
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
    const auto parts = split_number(text);
    if (!parts) {
        return std::nullopt;
    }
    const auto [value, unit] = *parts;
    double ms = 0;
    if (unit == "ms") {
        ms = value;
    } else if (unit == "s") {
        ms = value * 1000;
    } else if (unit == "m" || unit == "min") {
        ms = value * 60'000;
    } else if (unit == "h") {
        ms = value * 3'600'000;
    } else if (unit.empty() && value == 0) {
        ms = 0;
    } else {
        return std::nullopt;
    }
    if (ms > 1e12) {
        return std::nullopt;
    }
    return std::chrono::milliseconds{static_cast<std::int64_t>(std::llround(ms))};
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    const auto parts = split_number(text);
    if (!parts) {
        return std::nullopt;
    }
    const auto [value, unit] = *parts;
    double factor = 0;
    if (unit.empty() || unit == "B") {
        factor = 1;
    } else if (unit == "kB" || unit == "KB" || unit == "KiB") {
        factor = 1024.0;
    } else if (unit == "MB" || unit == "MiB") {
        factor = 1024.0 * 1024;
    } else if (unit == "GB" || unit == "GiB") {
        factor = 1024.0 * 1024 * 1024;
    } else {
        return std::nullopt;
    }
    const double bytes = value * factor;
    if (bytes > 1e18) {
        return std::nullopt;
    }
    return static_cast<std::uint64_t>(std::llround(bytes));
}

}  // namespace patroxy::conf
