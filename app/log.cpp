#include "app/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace patroxy::log {
namespace {
std::atomic<level> threshold{level::info};

std::string_view name(level l) {
    switch (l) {
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
    }
    return "info";
}
}  // namespace

void set_level(level l) { threshold.store(l, std::memory_order_relaxed); }

bool enabled(level l) { return l >= threshold.load(std::memory_order_relaxed); }

void write(level l, std::string_view component, std::string_view message) {
    if (!enabled(l)) {
        return;
    }
    const auto now = std::chrono::system_clock::now();
    const auto secs = std::chrono::system_clock::to_time_t(now);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char stamp[40];
    const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(millis));
    std::string out;
    out.reserve(64 + message.size());
    out.append(stamp).append(" ").append(name(l)).append(" ").append(component).append(": ").append(message);
    out.push_back('\n');
    // One write per line: concurrent lines stay whole (stderr is unbuffered).
    const char* p = out.data();
    std::size_t left = out.size();
    while (left > 0) {
        const auto w = ::write(STDERR_FILENO, p, left);
        if (w <= 0) {
            break;
        }
        p += w;
        left -= static_cast<std::size_t>(w);
    }
}

}  // namespace patroxy::log
