#pragma once
// One line per event on stderr ("2026-11-25T18:44:35.123Z info health: ...").
// A line is formatted on the thread that logs it and handed to a bounded
// queue; one writer thread of its own writes the queue out, so a stalled
// journald or pipe never stalls a worker: when the queue is full, lines are
// dropped and counted (dropped()), never waited for. Every line is made
// printable on the way in (control characters and invalid UTF-8 as \xNN),
// so whatever a message holds, it stays one line.

#include <cstdint>
#include <sstream>
#include <string_view>

namespace patroxy::log {

enum class level { debug, info, warn, error };

/// Lines below this level are dropped; any thread, at any time (a reload).
void set_level(level l);
bool enabled(level l);

/// Queues one line: timestamp, level, component, message. Never blocks on
/// the output; drops the line when the queue is full.
void write(level l, std::string_view component, std::string_view message);

/// Lines dropped because the queue was full, since the start.
std::uint64_t dropped();

/// Waits (at most `timeout_ms`) until every queued line is written: before
/// the process exits, and in tests that read the log.
void flush(int timeout_ms = 2000);

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
