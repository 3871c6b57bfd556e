// The handover exchange (app/handover.hpp) in process: the running side is a
// control_server on an io_context of its own, the next side the blocking
// request_handover/confirm calls, on a Unix socket in /tmp.

#include "app/handover.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

using namespace patroxy;
using namespace std::chrono_literals;

namespace {

struct outcome {
    std::atomic<int> taken{-1};
    std::atomic<int> adopted{-1};
};

// A running side that hands over one socket (a copy of a socketpair end) with `header`.
class running_side {
public:
    running_side(const std::string& path, nlohmann::json header, std::chrono::milliseconds confirm_timeout)
        : server_(ioc_, path,
                  {[this, header] {
                       app::handover_payload p;
                       p.header = header;
                       p.header["sockets"] = nlohmann::json::array({{{"kind", "stats"}}});
                       p.fds.emplace_back(::dup(pair_[0]));
                       return p;
                   },
                   [this](bool taken, bool adopted) {
                       seen.taken = taken ? 1 : 0;
                       seen.adopted = adopted ? 1 : 0;
                   }},
                  std::nullopt, confirm_timeout) {
        server_.start();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~running_side() {
        boost::asio::post(ioc_, [this] { server_.stop(true); });
        busy_.reset();
        thread_.join();
        ::close(pair_[0]);
        ::close(pair_[1]);
    }
    outcome seen;

private:
    int pair_[2] = {-1, -1};
    bool paired_ = ::socketpair(AF_UNIX, SOCK_STREAM, 0, pair_) == 0;
    boost::asio::io_context ioc_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> busy_ =
        boost::asio::make_work_guard(ioc_);
    app::control_server server_;
    std::thread thread_;
};

std::string temp_path(const char* what) {
    return "/tmp/patroxy-unit-" + std::to_string(::getpid()) + "-" + what + ".sock";
}

bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 150 && !done(); ++i) {
        std::this_thread::sleep_for(20ms);
    }
    return done();
}

const nlohmann::json current = {{"version", "test"}, {"handover", app::handover_protocol}};

}  // namespace

TEST_CASE("handover: TAKEN then OK, and the running side learns whether the VIP was adopted", "[app]") {
    const auto adopted = GENERATE(true, false);
    const auto path = temp_path("ok");
    running_side running(path, current, 15s);
    std::string why;
    auto got = app::request_handover(path, why);
    INFO(why);
    REQUIRE(got.has_value());
    CHECK(got->fds.size() == 1);
    CHECK(got->confirm(adopted));  // the OK came
    REQUIRE(eventually([&] { return running.seen.taken != -1; }));
    CHECK(running.seen.taken == 1);
    CHECK(running.seen.adopted == (adopted ? 1 : 0));
}

TEST_CASE("handover: a TAKEN after the confirm timeout gets no OK, and the running side resumes", "[app]") {
    const auto path = temp_path("late");
    running_side running(path, current, 100ms);
    std::string why;
    auto got = app::request_handover(path, why);
    REQUIRE(got.has_value());
    REQUIRE(eventually([&] { return running.seen.taken != -1; }));
    CHECK(running.seen.taken == 0);    // gave up: it accepts again
    CHECK(!got->confirm(true, 2s));    // so the next process must not start
}

TEST_CASE("handover: a running side without the protocol number gets a plain TAKEN and no OK is awaited", "[app]") {
    const auto path = temp_path("old");
    running_side running(path, {{"version", "0.0.9"}}, 15s);
    std::string why;
    auto got = app::request_handover(path, why);
    REQUIRE(got.has_value());
    CHECK(got->confirm(false));
    REQUIRE(eventually([&] { return running.seen.taken != -1; }));
    CHECK(running.seen.taken == 1);
    CHECK(running.seen.adopted == 1);  // a plain TAKEN: adopted, as older versions did
}
