// The worker's event loop on its own: deadlines, work posted from other
// threads, and edge-triggered readiness on a real socket pair.
#include "proxy/event_loop.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <thread>
#include <vector>

using namespace patroxy::proxy;
using namespace std::chrono_literals;
using clock_type = deadline_queue::clock;

TEST_CASE("deadlines: the wait until the earliest is rounded up, capped at an hour, none means forever", "[event_loop]") {
    deadline_queue q;
    const auto now = clock_type::now();
    CHECK(q.wait_ms(now) == -1);
    q.add(now + 2500us, [] {});
    CHECK(q.wait_ms(now) == 3);
    CHECK(q.wait_ms(now + 3ms) == 0);
    deadline_queue far;
    far.add(now + std::chrono::hours{24 * 30}, [] {});
    CHECK(far.wait_ms(now) == 3600 * 1000);
}

TEST_CASE("deadlines fire in time order, a removed one never, and one added for now while firing fires too", "[event_loop]") {
    deadline_queue q;
    const auto now = clock_type::now();
    std::vector<int> fired;
    q.add(now + 2ms, [&] { fired.push_back(2); });
    const auto gone = q.add(now + 1ms, [&] { fired.push_back(99); });
    q.add(now + 1ms, [&] {
        fired.push_back(1);
        q.add(now, [&] { fired.push_back(3); });
    });
    q.add(now + 1h, [&] { fired.push_back(4); });
    q.remove(gone);
    q.fire_due(now + 5ms);
    CHECK(fired == std::vector<int>{1, 3, 2});
    CHECK(q.wait_ms(now + 5ms) > 0);
}

namespace {
struct counting_watcher final : event_loop::watcher {
    int fd = -1;
    int wakeups = 0;
    std::size_t bytes = 0;
    void on_ready(std::uint32_t events) override {
        ++wakeups;
        if ((events & EPOLLIN) == 0) {
            return;
        }
        char buf[64];
        for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) {
            bytes += static_cast<std::size_t>(n);
        }
    }
};
}  // namespace

TEST_CASE("the loop runs work posted from another thread on its own thread, and stops when asked", "[event_loop]") {
    event_loop loop;
    std::thread runner([&] { loop.run(); });
    std::promise<std::thread::id> ran_on;
    std::thread poster([&] { loop.post([&] { ran_on.set_value(std::this_thread::get_id()); }); });
    poster.join();
    auto id = ran_on.get_future();
    REQUIRE(id.wait_for(2s) == std::future_status::ready);
    CHECK(id.get() == runner.get_id());
    loop.stop();
    runner.join();  // returns: the test would hang (and time out) otherwise
}

TEST_CASE("an edge-triggered socket wakes the loop once per arrival, and a deadline wakes it with nothing to read", "[event_loop]") {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0);
    event_loop loop;
    counting_watcher w;
    w.fd = pair[0];
    REQUIRE(!loop.watch(pair[0], EPOLLIN | EPOLLET, &w));
    std::promise<void> deadline_passed;
    loop.deadlines().add(clock_type::now() + 50ms, [&] { deadline_passed.set_value(); });
    std::thread runner([&] { loop.run(); });
    REQUIRE(::write(pair[1], "hello", 5) == 5);
    REQUIRE(deadline_passed.get_future().wait_for(2s) == std::future_status::ready);
    std::promise<std::pair<int, std::size_t>> seen;
    loop.post([&] { seen.set_value({w.wakeups, w.bytes}); });
    auto got = seen.get_future();
    REQUIRE(got.wait_for(2s) == std::future_status::ready);
    const auto [wakeups, bytes] = got.get();
    CHECK(wakeups == 1);
    CHECK(bytes == 5);
    loop.stop();
    runner.join();
    ::close(pair[0]);
    ::close(pair[1]);
}
