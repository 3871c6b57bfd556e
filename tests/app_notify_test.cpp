// systemd's notify protocol without libsystemd (app/notify.hpp): the real
// datagrams, received on a real AF_UNIX socket the test binds where
// $NOTIFY_SOCKET points, from the real daemon in process.

#include "app/notify.hpp"

#include "support/proxy_harness.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

// What systemd does: a datagram socket bound at a path (or in the abstract
// namespace, for a name starting with '@'); each receive waits at most 3 s.
class notify_listener {
public:
    explicit notify_listener(bool abstract) : fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
        REQUIRE(fd_ >= 0);
        const auto tag = std::to_string(::getpid()) + "-" + std::to_string(counter_++);
        name_ = abstract ? "@patroxy-notify-test-" + tag
                         : (std::filesystem::temp_directory_path() / ("patroxy-notify-" + tag)).string();
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, name_.data(), name_.size());
        if (abstract) {
            addr.sun_path[0] = '\0';
        } else {
            std::filesystem::remove(name_);
        }
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size() + (abstract ? 0 : 1));
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
        timeval tv{3, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~notify_listener() {
        ::close(fd_);
        if (name_.front() == '/') {
            std::filesystem::remove(name_);
        }
    }
    const std::string& name() const { return name_; }
    /// The next datagram, "" when none came within 3 s.
    std::string next() {
        char buf[4096];
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
    /// Datagrams until one contains `what` (at most 20 of them, 3 s each).
    std::string until(std::string_view what) {
        for (int i = 0; i < 20; ++i) {
            auto d = next();
            if (d.empty() || d.find(what) != std::string::npos) {
                return d;
            }
        }
        return {};
    }

private:
    static inline int counter_ = 0;
    int fd_;
    std::string name_;
};

}  // namespace

TEST_CASE("notify sends one datagram to a path or an abstract socket, and nothing without NOTIFY_SOCKET", "[app]") {
    const bool abstract = GENERATE(false, true);
    notify_listener systemd(abstract);
    ::unsetenv("NOTIFY_SOCKET");
    CHECK_FALSE(app::notify::enabled());
    CHECK_FALSE(app::notify::send("READY=1"));
    CHECK(app::notify::send("READY=1\nSTATUS=x", systemd.name()));
    CHECK(systemd.next() == "READY=1\nSTATUS=x");
    ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
    CHECK(app::notify::enabled());
    CHECK(app::notify::send("STATUS=through the environment"));
    CHECK(systemd.next() == "STATUS=through the environment");
    CHECK_FALSE(app::notify::send("READY=1", "relative/path"));
    ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("the service says RELOADING=1 with MONOTONIC_USEC, then READY=1, and STOPPING=1 with the drain", "[app]") {
    notify_listener systemd(false);
    ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
    boost::asio::io_context ioc;
    bool round_in = false;
    app::notify::service svc(ioc, {[&] { return round_in; }, [] { return std::string("fine"); }});
    svc.start(10s, false);
    ioc.run_for(200ms);
    CHECK_FALSE(svc.ready());  // no READY=1 before the first health round
    round_in = true;
    ioc.run_for(200ms);
    CHECK(svc.ready());
    const auto ready = systemd.next();
    CHECK(ready == "READY=1\nSTATUS=fine");
    svc.reloading();
    const auto reloading = systemd.next();
    CHECK(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
    svc.reloaded();
    CHECK(systemd.next() == "READY=1\nSTATUS=fine");
    svc.stopping(30s);
    CHECK(systemd.next() == "STOPPING=1\nEXTEND_TIMEOUT_USEC=35000000\nSTATUS=draining sessions, then stopping");
    ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("a service that took over says MAINPID=, and READY=1 comes after a bounded wait without a round", "[app]") {
    notify_listener systemd(true);
    ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
    boost::asio::io_context ioc;
    app::notify::service svc(ioc, {[] { return false; }, [] { return std::string("s"); }});
    svc.start(1s, true);
    ioc.run_for(150ms);
    CHECK_FALSE(svc.ready());
    ioc.run_for(1200ms);
    CHECK(svc.ready());
    CHECK(systemd.next() == "READY=1\nSTATUS=s\nMAINPID=" + std::to_string(::getpid()));
    ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("the daemon says READY=1 once its first health round is in, and STOPPING=1 on shutdown", "[app][component]") {
    notify_listener systemd(false);
    ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
    std::vector<std::unique_ptr<fake_member>> members;
    members.push_back(std::make_unique<fake_member>("pg0", "master"));
    members.push_back(std::make_unique<fake_member>("pg1", "replica"));
    auto cfg = config_for(members);
    cfg.health.interval = 1s;  // one round within the test, not several
    proxy_under_test p(cfg);
    const auto ready = systemd.until("READY=1");
    REQUIRE(ready.rfind("READY=1\n", 0) == 0);
    // Sent once every member was checked: the leader is known by then.
    CHECK(ready.find("STATUS=leader pg0, ") != std::string::npos);
    CHECK(ready.find("MAINPID=") == std::string::npos);
    CHECK(p.wait_for_leader(0));
    p.daemon().request_shutdown();
    const auto stopping = systemd.until("STOPPING=1");
    CHECK(stopping.rfind("STOPPING=1\nEXTEND_TIMEOUT_USEC=", 0) == 0);
    ::unsetenv("NOTIFY_SOCKET");
}
