#pragma once
// One line per event on stderr ("2026-11-25T18:44:35.123Z info health: ..."),
// written with a single write(2) so lines from worker threads never interleave.
// systemd's journal and `docker logs`-style collectors take stderr as is.

#include <sstream>
#include <string_view>

namespace patroxy::log {

enum class level { debug, info, warn, error };

/// Lines below this level are dropped; set once at startup.
void set_level(level l);
bool enabled(level l);

/// Writes one line: timestamp, level, component, message.
void write(level l, std::string_view component, std::string_view message);

/// Builds a message with operator<< and writes it when destroyed.
class line {
public:
    line(level l, std::string_view component) : level_(l), component_(component) {}
    line(const line&) = delete;
    line& operator=(const line&) = delete;
    ~line() { write(level_, component_, out_.str()); }
    template <class T>
    line& operator<<(const T& v) {
        out_ << v;
        return *this;
    }

private:
    level level_;
    std::string_view component_;
    std::ostringstream out_;
};

}  // namespace patroxy::log

// The stream is only built when the level is on.
#define PATROXY_LOG(lvl, component) \
    if (!::patroxy::log::enabled(::patroxy::log::level::lvl)) { \
    } else \
        ::patroxy::log::line(::patroxy::log::level::lvl, component)
