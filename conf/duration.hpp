#pragma once
// Human units for durations and sizes in the config file: "500ms", "3s", "2m",
// "1h"; "64kB", "1MB", "16MiB". Pure parsers: no exceptions, no I/O.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace patroxy::conf {

/// "250ms", "3s", "1.5s", "2m", "1h", or "0". nullopt on anything else.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

/// "1048576", "512kB", "16MB", "1GB" (powers of 1024, as PostgreSQL reads them), "16MiB".
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace patroxy::conf
