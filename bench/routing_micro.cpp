// The routing decision alone: proxy::candidates() for a read listener over N
// streaming replicas and a leader, the topology built as the monitor builds it
// (health::build_topology from parsed Patroni answers, then, from the routing
// classes on, health::eligibility::apply). bench/routing.sh compiles this file
// against each tree it compares, with -DPATROXY_BASELINE for one from before
// the routing classes (9a697d0^: candidates(topo, listener, read_fallback, turn)),
// and prints ns per call, the median of 5 timed runs of a million calls.
//
// With `churn` (this build only) a second thread moves the members' session
// counts up and down while the calls run, as other workers' sessions do in
// patroxy: a leastconn whose sort compares counts that change under it is not
// given a consistent order (see bench/RESULTS-routing.md). It exits 0 when
// all calls returned.
//
//   routing_micro REPLICAS roundrobin|leastconn|first [OPEN_SESSIONS_PER_REPLICA [churn]]

#include "conf/loader.hpp"
#include "health/patroni_report.hpp"
#include "health/topology.hpp"
#include "proxy/balancer.hpp"
#ifndef PATROXY_BASELINE
#include "health/eligibility.hpp"
#include "proxy/books.hpp"
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace patroxy;

namespace {

const char* leader_body = R"({"state":"running","role":"master","timeline":1,"xlog":{"location":0}})";
const char* replica_body =
    R"({"state":"running","role":"replica","timeline":1,"replication_state":"streaming",)"
    R"("xlog":{"received_location":0,"replayed_location":0,"replayed_timestamp":null,"paused":false}})";

health::member_view view(std::uint32_t id, const std::string& name, const char* body) {
    health::member_view m;
    m.id = id;
    m.name = name;
    m.host = "127.0.0.1";
    m.port = static_cast<std::uint16_t>(18700 + id);
    m.up = true;
    m.ever_up = true;
    std::string why;
    m.report = health::parse_patroni(body, why);
    if (!m.report) {
        std::fprintf(stderr, "routing_micro: %s\n", why.c_str());
        std::exit(2);
    }
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: routing_micro REPLICAS roundrobin|leastconn|first [OPEN_PER_REPLICA [churn]]\n");
        return 2;
    }
    const int n = std::atoi(argv[1]);
    const std::string balance = argv[2];
    [[maybe_unused]] const int open = argc > 3 ? std::atoi(argv[3]) : 0;
    const bool churning = argc > 4 && std::string(argv[4]) == "churn";
    std::string yaml = "members:\n  - {name: leader, host: 127.0.0.1, port: 18700, api: \"http://127.0.0.1:18750\"}\n";
    for (int i = 1; i <= n; ++i) {
        yaml += "  - {name: r" + std::to_string(i) + ", host: 127.0.0.1, port: " + std::to_string(18700 + i) +
                ", api: \"http://127.0.0.1:" + std::to_string(18750 + i) + "\"}\n";
    }
    yaml += "listeners:\n  - {name: replicas, role: read, bind: 127.0.0.1, port: 18540, maxconn: 5000";
#ifndef PATROXY_BASELINE
    yaml += ", balance: " + balance;
#else
    if (balance != "roundrobin") {
        std::fprintf(stderr, "routing_micro: the baseline has round-robin only\n");
        return 2;
    }
#endif
    yaml += "}\nlog: {level: warn}\n";
    const conf::config cfg = conf::load_text(yaml, "routing_micro");
    std::vector<health::member_view> members;
    members.push_back(view(0, "leader", leader_body));
    for (int i = 1; i <= n; ++i) {
        members.push_back(view(static_cast<std::uint32_t>(i), "r" + std::to_string(i), replica_body));
    }
    auto topo = health::build_topology(1, std::move(members), cfg.health);
#ifndef PATROXY_BASELINE
    health::eligibility elig;
    elig.apply(topo, cfg.listeners, cfg.health.rise);
    std::vector<std::unique_ptr<proxy::member_book>> owned;
    std::vector<proxy::member_book*> books;
    for (const auto& m : topo.members) {
        owned.push_back(std::make_unique<proxy::member_book>(m.name, 1));
        owned.back()->routed = m.name == "leader" ? 0 : open + static_cast<int>(m.id % 3);  // uneven, as in use
        books.push_back(owned.back().get());
    }
#endif
    std::atomic<bool> stop{false};
    std::thread churn;
    if (churning) {
#ifndef PATROXY_BASELINE
        churn = std::thread([&] {
            std::minstd_rand rng(1);
            while (!stop.load(std::memory_order_relaxed)) {
                auto& routed = books[1 + rng() % (books.size() - 1)]->routed;
                if (rng() & 1) {
                    routed.fetch_add(1, std::memory_order_relaxed);
                } else if (routed.load(std::memory_order_relaxed) > 0) {
                    routed.fetch_sub(1, std::memory_order_relaxed);
                }
            }
        });
#else
        std::fprintf(stderr, "routing_micro: the baseline keeps no session counts to churn\n");
        return 2;
#endif
    }
    const auto& listener = cfg.listeners.front();
    std::size_t turn = 0;
    std::size_t check = 0;
    const auto one = [&] {
#ifndef PATROXY_BASELINE
        const auto c = proxy::candidates(topo, listener, turn++, books);
        check += c.members.size() + c.members.front();
#else
        const auto c = proxy::candidates(topo, listener, cfg.health.read_fallback_to_leader, turn++);
        check += c.size() + c.front();
#endif
    };
    for (int i = 0; i < 100000; ++i) {
        one();
    }
    std::vector<double> ns;
    constexpr int calls = 1'000'000;
    // With churn: on for 5 s at least, as a crash is a matter of timing.
    const auto churn_until = std::chrono::steady_clock::now() + std::chrono::seconds(churning ? 5 : 0);
    for (int run = 0; run < 5 || std::chrono::steady_clock::now() < churn_until; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) {
            one();
        }
        ns.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / calls);
    }
    stop = true;
    if (churn.joinable()) {
        churn.join();
    }
    std::sort(ns.begin(), ns.end());
    std::printf("%.1f ns/call (%d replicas, %s; check %zu)\n", ns[ns.size() / 2], n, balance.c_str(), check);
    return 0;
}
