#include "base/log.hpp"

#include "base/text.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

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

// Lines waiting for the writer, at most this many bytes: about 8,000 lines of
// 128 bytes, a few seconds of a busy proxy's session lines.
constexpr std::size_t queue_limit_bytes = 1 << 20;

class writer {
public:
    writer() : thread_([this] { run(); }) {}
    ~writer() {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }

    void push(std::string line) {
        {
            const std::lock_guard lock(mutex_);
            if (queued_bytes_ + line.size() > queue_limit_bytes) {
                dropped_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            queued_bytes_ += line.size();
            queue_.push_back(std::move(line));
        }
        wake_.notify_one();
    }

    void flush(int timeout_ms) {
        std::unique_lock lock(mutex_);
        drained_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                          [this] { return queue_.empty() && !writing_; });
    }

    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

private:
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty() && stopping_) {
                return;
            }
            // Everything queued goes out in one write; the lock is not held meanwhile.
            std::string batch;
            batch.reserve(queued_bytes_);
            for (auto& l : queue_) {
                batch += l;
            }
            queue_.clear();
            queued_bytes_ = 0;
            writing_ = true;
            lock.unlock();
            write_all(batch);
            lock.lock();
            writing_ = false;
            if (queue_.empty()) {
                drained_.notify_all();
            }
        }
    }

    static void write_all(const std::string& out) {
        const char* p = out.data();
        std::size_t left = out.size();
        while (left > 0) {
            const auto w = ::write(STDERR_FILENO, p, left);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                return;  // stderr closed or broken: nothing better to do with the lines
            }
            p += w;
            left -= static_cast<std::size_t>(w);
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable drained_;
    std::deque<std::string> queue_;
    std::size_t queued_bytes_ = 0;
    bool writing_ = false;
    bool stopping_ = false;
    std::atomic<std::uint64_t> dropped_{0};
    std::thread thread_;
};

// Started by the first line; its destructor (at exit, after main) writes what is left.
writer& the_writer() {
    static writer w;
    return w;
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
    out.append(stamp).append(" ").append(name(l)).append(" ").append(component).append(": ");
    out.append(base::printable(message));
    out.push_back('\n');
    the_writer().push(std::move(out));
}

std::uint64_t dropped() { return the_writer().dropped(); }

void flush(int timeout_ms) { the_writer().flush(timeout_ms); }

}  // namespace patroxy::log
