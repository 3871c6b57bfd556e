// The real proxy and health monitor, in process, against fake Patroni APIs
// and stand-in PostgreSQL backends on 127.0.0.1 ephemeral ports.

#include "proxy/server.hpp"

#include "bench/standin_backend.hpp"
#include "protocol/error_response.hpp"
#include "health/monitor.hpp"
#include "support/fake_patroni.hpp"
#include "support/raw_client.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <future>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;
using role = conf::listener_role;

namespace {

std::uint16_t free_port() {
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

// Polls `done` every 20 ms for at most `limit`.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return done();
}

// One member: a fake Patroni API plus a stand-in PostgreSQL.
struct fake_member {
    fake_member(const std::string& name, const std::string& role) : api(fake_patroni::answer(role)), pg(name) {}
    fake_patroni api;
    bench::standin_thread pg;
};

// patroxy's data plane and health monitor, wired as app::daemon wires them.
class proxy_under_test {
public:
    explicit proxy_under_test(conf::config cfg)
        : cfg_(std::move(cfg)),
          server_(cfg_, std::make_shared<const health::topology>()),
          monitor_(control_, cfg_, [this](health::topology_ptr t) { server_.publish(std::move(t)); }) {
        server_.trouble().set_sink([this](std::size_t member) {
            boost::asio::post(control_, [this, member] { monitor_.suspect(member); });
        });
        server_.start();
        monitor_.start();
        thread_ = std::thread([this] { control_.run(); });
    }
    ~proxy_under_test() {
        boost::asio::post(control_, [this] { monitor_.stop(); });
        control_.stop();
        thread_.join();
        server_.stop();
    }
    std::uint16_t port(std::size_t listener) const { return cfg_.listeners[listener].port; }
    health::topology_ptr topology() const { return monitor_.latest(); }
    proxy::server& server() { return server_; }
    /// Waits until the monitor routes writes to `leader` (or to none).
    bool wait_for_leader(std::optional<std::size_t> leader, std::chrono::milliseconds limit = 5s) {
        return eventually([&] { return topology()->leader == leader; }, limit);
    }

private:
    conf::config cfg_;
    boost::asio::io_context control_;
    proxy::server server_;
    health::monitor monitor_;
    std::thread thread_;
};

conf::config config_for(std::vector<std::unique_ptr<fake_member>>& members) {
    conf::config cfg;
    for (std::size_t i = 0; i < members.size(); ++i) {
        conf::member_config m;
        m.name = "pg" + std::to_string(i);
        m.host = "127.0.0.1";
        m.port = members[i]->pg->port();
        m.api.host = "127.0.0.1";
        m.api.port = members[i]->api.port();
        m.api.url = members[i]->api.url();
        cfg.members.push_back(m);
    }
    cfg.listeners = conf::config::default_listeners(members.size());
    cfg.listeners[0].bind = cfg.listeners[1].bind = "127.0.0.1";
    cfg.listeners[0].port = free_port();
    cfg.listeners[1].port = free_port();
    cfg.workers = 2;
    cfg.health.interval = 200ms;
    cfg.health.fast_interval = 100ms;
    cfg.health.timeout = 300ms;
    cfg.timeouts.wait_for_backend = 3s;
    cfg.timeouts.connect = 1s;
    return cfg;
}

// A client that connects and sends its startup on a thread of its own, so the
// test can change the cluster while patroxy holds it.
std::future<startup_outcome> startup_in_background(std::uint16_t port) {
    return std::async(std::launch::async, [port] {
        raw_client c(port);
        return c.startup();
    });
}

// The held client got through, to `member`.
void check_routed_to(std::future<startup_outcome>& outcome, const std::string& member) {
    REQUIRE(outcome.wait_for(3s) == std::future_status::ready);
    const auto r = outcome.get();
    CHECK(r.ready);
    CHECK(r.server_name == member);
}

// A PostgreSQL that is stopping: it accepts, reads the startup, sends
// `answer` (nothing: just closes; or its FATAL 57P03) and closes.
class stopping_postgres {
public:
    explicit stopping_postgres(std::vector<std::uint8_t> answer = {}) : answer_(std::move(answer)) {
        accept_one();
        thread_ = std::thread([this] { ioc_.run_for(10s); });
    }
    ~stopping_postgres() {
        ioc_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int answered() const { return answered_; }

private:
    void accept_one() {
        acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
            if (ec) {
                return;
            }
            auto sock = std::make_shared<boost::asio::ip::tcp::socket>(std::move(s));
            auto buf = std::make_shared<std::array<std::uint8_t, 512>>();
            sock->async_read_some(boost::asio::buffer(*buf), [this, sock, buf](boost::system::error_code rec, std::size_t) {
                if (rec) {
                    return;
                }
                ++answered_;
                boost::asio::async_write(*sock, boost::asio::buffer(answer_),
                                         [sock](boost::system::error_code, std::size_t) { sock->close(); });
            });
            accept_one();
        });
    }

    std::vector<std::uint8_t> answer_;
    boost::asio::io_context ioc_;
    boost::asio::ip::tcp::acceptor acceptor_{ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}};
    std::atomic<int> answered_{0};
    std::thread thread_;
};

// A PostgreSQL port that never answers: it listens, but nothing accepts.
// Connections wait in its backlog; once `backlog` + 1 wait, new SYNs are
// dropped and connects hang.
class silent_listener {
public:
    explicit silent_listener(int backlog) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, backlog) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            ::close(fd_);
            throw std::runtime_error("silent_listener: cannot listen on 127.0.0.1");
        }
        port_ = ntohs(addr.sin_port);
    }
    ~silent_listener() { ::close(fd_); }
    silent_listener(const silent_listener&) = delete;
    silent_listener& operator=(const silent_listener&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_;
    std::uint16_t port_ = 0;
};

std::vector<std::unique_ptr<fake_member>> cluster(std::initializer_list<std::string> roles) {
    std::vector<std::unique_ptr<fake_member>> out;
    int i = 0;
    for (const auto& r : roles) {
        out.push_back(std::make_unique<fake_member>("pg" + std::to_string(i++), r));
    }
    return out;
}

}  // namespace

TEST_CASE("the write port reaches the leader and the read port round-robins over replicas", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    {
        // Two at once, then two more: the counters sum over both workers.
        raw_client a(p.port(0));
        raw_client b(p.port(0));
        CHECK(a.startup().server_name == "pg0");
        CHECK(b.startup().server_name == "pg0");
    }
    REQUIRE(eventually([&] { return p.server().totals()[0].current == 0; }));
    for (int i = 0; i < 2; ++i) {
        raw_client c(p.port(0));
        CHECK(c.startup().server_name == "pg0");
    }
    REQUIRE(eventually([&] { return p.server().totals()[0].current == 0; }));
    const auto totals = p.server().totals();
    CHECK(totals[0].accepted == 4);
    CHECK(totals[0].members[0].total == 4);
    CHECK(totals[0].members[0].peak == 2);
    CHECK(totals[0].peak == 2);
    CHECK(totals[0].closed[static_cast<std::size_t>(proxy::close_reason::done)] == 4);
    CHECK(totals[0].bytes_in > 0);
    // Strictly in turn, across both workers.
    std::vector<std::string> order;
    for (int i = 0; i < 8; ++i) {
        raw_client c(p.port(1));
        order.push_back(c.startup().server_name);
    }
    for (std::size_t i = 0; i < order.size(); ++i) {
        CHECK((order[i] == "pg1" || order[i] == "pg2"));
        if (i > 0) {
            CHECK(order[i] != order[i - 1]);
        }
    }
}

TEST_CASE("a leader change moves new write sessions and cuts the old ones", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    raw_client old_session(p.port(0), 3s);
    REQUIRE(old_session.startup().server_name == "pg0");
    // Patroni's switchover: the old leader says replica first, then the new one leads.
    members[0]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(p.wait_for_leader(std::nullopt));
    CHECK(old_session.closed_by_peer());  // shutdown-sessions, without waiting for fall
    members[1]->api.set_body(fake_patroni::answer("master"));
    REQUIRE(p.wait_for_leader(1u));
    raw_client fresh(p.port(0));
    CHECK(fresh.startup().server_name == "pg1");
}

TEST_CASE("a client with no leader is held and routed as soon as one appears", "[proxy][component]") {
    auto members = cluster({"replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return p.server().session_count() == 1; }));
    std::this_thread::sleep_for(300ms);  // the client is waiting, held
    CHECK(outcome.wait_for(0s) == std::future_status::timeout);
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("bytes a held client sends after its startup reach the member once one is routed", "[proxy][component]") {
    // The session reads nothing while it waits: what the client sends then is
    // reported once, and must be read when relaying begins.
    auto members = cluster({"replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    raw_client c(p.port(0));
    REQUIRE(c.send(make_startup({{"user", "tester"}, {"database", "db"}})));
    REQUIRE(eventually([&] { return p.server().totals()[0].held == 1; }));
    const packet query = {'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0};
    REQUIRE(c.send(query));
    std::this_thread::sleep_for(200ms);  // the bytes arrive while the session holds
    members[0]->api.set_body(fake_patroni::answer("master"));
    const auto r = c.read_until_ready();
    REQUIRE(r.ready);
    packet echoed(query.size());
    REQUIRE(c.read_exact(echoed.data(), echoed.size()));  // the stand-in echoes after ReadyForQuery
    CHECK(echoed == query);
}

TEST_CASE("a client that sends more than a read's worth right behind its startup has all of it relayed", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0));
    raw_client c(p.port(0));
    auto bytes = make_startup({{"user", "tester"}, {"database", "db"}});
    const auto startup_size = bytes.size();
    for (std::size_t i = 0; i < 3000; ++i) {
        bytes.push_back(static_cast<std::uint8_t>(i % 251));
    }
    REQUIRE(c.send(bytes));  // one write: the proxy's first read takes only part of it
    REQUIRE(c.read_until_ready().ready);
    packet echoed(bytes.size() - startup_size);
    REQUIRE(c.read_exact(echoed.data(), echoed.size()));
    CHECK(std::equal(echoed.begin(), echoed.end(), bytes.begin() + static_cast<std::ptrdiff_t>(startup_size)));
}

TEST_CASE("a held client gets FATAL 57P03 naming the listener when no leader comes", "[proxy][component]") {
    auto members = cluster({"replica"});
    auto cfg = config_for(members);
    cfg.timeouts.wait_for_backend = 300ms;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    SECTION("plaintext") {
        raw_client c(p.port(0));
        const auto r = c.startup();
        CHECK(r.severity == "FATAL");
        CHECK(r.sqlstate == "57P03");
        CHECK(r.message == "patroxy: no leader available for listener 'master' after waiting 300ms");
        CHECK(c.closed_by_peer());
    }
    SECTION("after an SSLRequest the client is told 'N' first, then the error") {
        raw_client c(p.port(0));
        c.send(make_code_packet(protocol::ssl_request_code));
        CHECK(c.read_byte() == std::uint8_t{'N'});
        const auto r = c.startup();
        CHECK(r.sqlstate == "57P03");
    }
}

TEST_CASE("past maxconn a client gets 53300", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.listeners[0].maxconn = 1;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client first(p.port(0));
    REQUIRE(first.startup().ready);
    raw_client second(p.port(0));
    const auto r = second.startup();
    CHECK(r.sqlstate == "53300");
    CHECK(r.message == "patroxy: too many connections on listener 'master' (maxconn 1)");
}

TEST_CASE("two members claiming leadership route writes to none", "[proxy][component]") {
    auto members = cluster({"master", "master"});
    auto cfg = config_for(members);
    cfg.timeouts.wait_for_backend = 200ms;
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->split_brain(); }));
    CHECK(!p.topology()->leader);
    raw_client c(p.port(0));
    CHECK(c.startup().sqlstate == "57P03");
    members[1]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(p.wait_for_leader(0u));
}

TEST_CASE("hung and garbage-speaking APIs go DOWN after fall checks while the others are polled on time", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.health.fall = 2;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    const auto t0 = std::chrono::steady_clock::now();
    members[1]->api.set_mode(fake_patroni::mode::hang);
    members[2]->api.set_mode(fake_patroni::mode::garbage);
    REQUIRE(eventually([&] {
        const auto t = p.topology();
        return !t->members[1].up && !t->members[2].up;
    }));
    const auto t = p.topology();
    CHECK(t->members[1].last_check.error == "answer: timed out");
    CHECK(t->members[2].last_check.error == "HTTP 200: body is not a JSON object");
    CHECK(t->members[2].last_check.http_status == 200);
    CHECK(t->readable.empty());
    // The leader's checks kept their pace while the others hung: no gap
    // longer than the fast interval plus generous scheduling slack.
    std::this_thread::sleep_for(500ms);
    std::vector<std::chrono::steady_clock::time_point> polls;
    for (auto at : members[0]->api.requests()) {
        if (at >= t0) {
            polls.push_back(at);
        }
    }
    REQUIRE(polls.size() >= 4);
    for (std::size_t i = 1; i < polls.size(); ++i) {
        CHECK(polls[i] - polls[i - 1] < 260ms);
    }
    raw_client c(p.port(0));
    CHECK(c.startup().server_name == "pg0");  // routing goes on
}

TEST_CASE("a refused connect moves a read session to the next replica", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.members[1].port = free_port();  // nothing listens there
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    for (int i = 0; i < 4; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
    }
}

TEST_CASE("a malformed first packet closes only its own session", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    raw_client good(p.port(0));
    REQUIRE(good.startup().ready);
    for (std::uint32_t len : {0u, 4u, 7u, 10001u, 0x80000000u}) {
        raw_client bad(p.port(0));
        packet p4;
        put_u32(p4, len);
        put_u32(p4, 196608);
        bad.send(p4);
        CHECK(bad.closed_by_peer());
    }
    raw_client injected(p.port(0));
    auto ssl = make_code_packet(protocol::ssl_request_code);
    ssl.push_back('Q');
    injected.send(ssl);
    CHECK(injected.closed_by_peer());
    // The good session still echoes.
    const packet ping{'x', 'y'};
    REQUIRE(good.send(ping));
    CHECK(good.read_byte() == std::uint8_t{'x'});
}

TEST_CASE("a CancelRequest goes only to the member that issued the key while its session lives", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    std::optional<raw_client> session(std::in_place, p.port(1));
    const auto r = session->startup();
    REQUIRE(r.ready);
    REQUIRE(!r.key_secret.empty());
    const auto owner = std::stoi(r.server_name.substr(2));
    const auto other = owner == 1 ? 2 : 1;
    REQUIRE(eventually([&] { return p.server().known_cancel_keys() == 1; }));
    {
        raw_client cancel(p.port(0));  // on the write port: the key still finds its replica
        cancel.send(make_cancel(r.key_pid, r.key_secret));
        CHECK(cancel.closed_by_peer());
    }
    CHECK(eventually([&] { return members[owner]->pg->cancels().size() == 1; }));
    const protocol::cancel_key key{r.key_pid, r.key_secret};
    CHECK(members[owner]->pg->cancels().front() == key);
    std::this_thread::sleep_for(100ms);
    CHECK(members[other]->pg->cancels().empty());
    CHECK(members[0]->pg->cancels().empty());
    // Once the session ends its key is forgotten: a cancel with it fans out.
    session.reset();
    REQUIRE(eventually([&] { return p.server().known_cancel_keys() == 0; }));
}

TEST_CASE("a CancelRequest with an unknown key on the read port reaches every replica", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    raw_client c(p.port(1));
    c.send(make_cancel(4242, {9, 9, 9, 9}));
    CHECK(c.closed_by_peer());
    const protocol::cancel_key key{4242, {9, 9, 9, 9}};
    CHECK(eventually([&] { return members[1]->pg->cancels().size() == 1 && members[2]->pg->cancels().size() == 1; }));
    CHECK(members[1]->pg->cancels().front() == key);
    CHECK(members[2]->pg->cancels().front() == key);
    // The leader gets it too: a read session stays open on a replica that is
    // promoted, so the leader may own the key.
    CHECK(eventually([&] { return members[0]->pg->cancels().size() == 1; }));
}

TEST_CASE("a leader that refuses connects holds the client until the next leader takes it", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();  // the leader's PostgreSQL is stopping: refused
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    auto outcome = startup_in_background(p.port(0));
    std::this_thread::sleep_for(500ms);
    CHECK(outcome.wait_for(0s) == std::future_status::timeout);  // held, not refused
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("a leader that keeps refusing gets the client a 57P03 naming the failure", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();
    cfg.timeouts.wait_for_backend = 600ms;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client c(p.port(0));
    const auto r = c.startup();
    CHECK(r.sqlstate == "57P03");
    CHECK(r.message == "patroxy: could not connect to a member for listener 'master' (pg0: Connection refused)");
}

TEST_CASE("a member that closes before answering the startup is retried like a failed connect", "[proxy][component]") {
    stopping_postgres closer;  // closes without a word
    auto members = cluster({"replica", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = closer.port();
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    for (int i = 0; i < 4; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg1");
    }
    CHECK(closer.answered() >= 2);
}

TEST_CASE("reads skip lagging and noloadbalance replicas, and 'primary' leads like 'master'", "[proxy][component]") {
    auto members = cluster({"primary", "replica", "replica", "replica"});
    members[0]->api.set_body(R"({"state": "running", "role": "primary", "xlog": {"location": 5000000}})");
    members[1]->api.set_body(R"({"state": "running", "role": "replica", "xlog": {"received_location": 1000}})");
    members[2]->api.set_body(R"({"state": "running", "role": "replica", "tags": {"noloadbalance": true},
                                 "xlog": {"received_location": 5000000}})");
    members[3]->api.set_body(R"({"state": "running", "role": "replica", "xlog": {"received_location": 4999000}})");
    auto cfg = config_for(members);
    cfg.health.max_lag_bytes = 16 * 1024;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->members[3].lag_bytes.has_value(); }));
    CHECK(p.topology()->readable == std::vector<std::size_t>{3});
    CHECK(p.topology()->members[1].lag_bytes == 4999000u);
    for (int i = 0; i < 3; ++i) {
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg3");
    }
    raw_client w(p.port(0));
    CHECK(w.startup().server_name == "pg0");
}

TEST_CASE("a member answering FATAL 57P03 (shutting down) holds the client for the next leader", "[proxy][component]") {
    // What PostgreSQL says while it stops, before Patroni reports the demotion.
    std::vector<std::uint8_t> fatal;
    protocol::encode_error_response(fatal, protocol::severity::fatal, "57P03", "the database system is shutting down");
    stopping_postgres stopping(fatal);
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = stopping.port();
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return stopping.answered() >= 1; }));
    CHECK(outcome.wait_for(300ms) == std::future_status::timeout);  // held, not shown the FATAL
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
}

TEST_CASE("the workers describe every open session with its user and database and application_name", "[proxy][component]") {
    auto members = cluster({"master", "replica", "replica"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0u));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    raw_client writer(p.port(0));
    REQUIRE(writer.send(make_startup({{"user", "alice"}, {"database", "orders"}, {"application_name", "billing"}})));
    REQUIRE(writer.read_until_ready().ready);
    raw_client reader(p.port(1));
    REQUIRE(reader.send(make_startup({{"user", "bob"}, {"database", "reports"}})));
    REQUIRE(reader.read_until_ready().ready);
    raw_client silent(p.port(1));  // connected, no first packet yet

    // Asks the way the stats server does: callbacks come back on our io_context.
    auto describe = [&](std::size_t limit) {
        boost::asio::io_context here;
        std::vector<proxy::session_view> got;
        bool answered = false;
        auto busy = boost::asio::make_work_guard(here);
        p.server().describe_sessions(limit, here.get_executor(), [&](std::vector<proxy::session_view> v) {
            got = std::move(v);
            answered = true;
            busy.reset();
        });
        here.run_for(3s);
        CHECK(answered);
        return got;
    };
    std::vector<proxy::session_view> views;
    REQUIRE(eventually([&] { return (views = describe(10)).size() == 3; }));
    // Oldest first.
    CHECK(views[0].user == "alice");
    CHECK(views[0].database == "orders");
    CHECK(views[0].application_name == "billing");
    CHECK(views[0].listener == 0);
    CHECK(views[0].member == std::optional<std::size_t>(0));
    CHECK(views[0].state == "active");
    CHECK(views[0].bytes_in > 0);
    CHECK(views[0].bytes_out > 0);
    CHECK(views[1].user == "bob");
    CHECK(views[1].listener == 1);
    CHECK((views[1].member == std::optional<std::size_t>(1) || views[1].member == std::optional<std::size_t>(2)));
    CHECK(views[2].state == "startup");
    CHECK(views[2].user.empty());
    CHECK(views[0].age_seconds >= views[1].age_seconds);
    // The limit keeps the longest-running.
    const auto one = describe(1);
    REQUIRE(one.size() == 1);
    CHECK(one[0].user == "alice");
}

TEST_CASE("4 MiB each way arrive whole and in order when the client reads late", "[proxy][component]") {
    auto members = cluster({"master"});
    proxy_under_test p(config_for(members));
    REQUIRE(p.wait_for_leader(0));
    raw_client c(p.port(0));
    REQUIRE(c.startup().ready);
    // Echoed back by the stand-in. The reader starts late, so every buffer on
    // the way fills and patroxy must wait for the client (partial writes).
    packet out(4 * 1024 * 1024);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::uint8_t>(i % 251);
    }
    auto sent = std::async(std::launch::async, [&] { return c.send(out); });
    std::this_thread::sleep_for(300ms);  // let the buffers fill: what this test is about
    packet in(out.size());
    REQUIRE(c.read_exact(in.data(), in.size()));
    CHECK(sent.get());
    CHECK(in == out);
    const auto totals = p.server().totals();
    CHECK(totals[0].bytes_in >= out.size());
    CHECK(totals[0].bytes_out >= out.size());
}

// AuthenticationOk then ReadyForQuery: the shortest startup answer.
std::vector<std::uint8_t> trust_answer() {
    return {'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I'};
}

TEST_CASE("a member's FATAL and close reach the client as the error, then the end of the connection", "[proxy][component]") {
    // pg_terminate_backend or idle_session_timeout: the error and the FIN
    // leave PostgreSQL together, so patroxy may see both in one event.
    auto answer = trust_answer();
    protocol::encode_error_response(answer, protocol::severity::fatal, "57P01",
                                    "terminating connection due to administrator command");
    stopping_postgres terminating(answer);
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.members[0].port = terminating.port();
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    for (int i = 0; i < 5; ++i) {
        raw_client c(p.port(0), 2s);
        REQUIRE(c.startup().ready);
        const auto after = c.read_until_ready();
        CHECK(after.sqlstate == "57P01");
        CHECK(c.closed_by_peer());
    }
}

TEST_CASE("a member that sends its last bytes and closes while the client reads late: every byte, then the end", "[proxy][component]") {
    auto answer = trust_answer();
    const std::size_t tail = 1024 * 1024;
    for (std::size_t i = 0; i < tail; ++i) {
        answer.push_back(static_cast<std::uint8_t>(i % 251));
    }
    stopping_postgres finishing(answer);
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.members[0].port = finishing.port();
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0u));
    raw_client c(p.port(0), 2s);
    REQUIRE(c.send(make_startup({{"user", "tester"}, {"database", "db"}})));
    // Patroxy has to wait for the client while the member's last bytes and
    // its FIN arrive: the FIN's event comes while it cannot read.
    std::this_thread::sleep_for(300ms);
    REQUIRE(c.read_until_ready().ready);
    packet in(tail);
    REQUIRE(c.read_exact(in.data(), in.size()));
    CHECK(in[tail - 1] == static_cast<std::uint8_t>((tail - 1) % 251));
    CHECK(c.closed_by_peer());
}

TEST_CASE("a connect that gets no answer times out and the session moves to the next replica", "[proxy][component]") {
    silent_listener silent(0);
    raw_client filler(silent.port());  // takes the one slot in its accept queue: connects hang now
    auto members = cluster({"master", "replica", "replica"});
    auto cfg = config_for(members);
    cfg.members[1].port = silent.port();
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 2; }));
    // Round robin sends at least one of the two to the silent member first.
    bool waited_for_timeout = false;
    for (int i = 0; i < 2; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        raw_client c(p.port(1));
        CHECK(c.startup().server_name == "pg2");
        const auto took = std::chrono::steady_clock::now() - t0;
        CHECK(took < 2500ms);
        waited_for_timeout = waited_for_timeout || took >= 900ms;
    }
    CHECK(waited_for_timeout);
    CHECK(p.server().totals()[1].members[1].connect_errors >= 1);
}

TEST_CASE("an idle session is closed at client_idle and a talking one is not", "[proxy][component]") {
    auto members = cluster({"master"});
    auto cfg = config_for(members);
    cfg.timeouts.client_idle = 400ms;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    raw_client talking(p.port(0));
    REQUIRE(talking.startup().ready);
    raw_client idle(p.port(0), 3s);
    REQUIRE(idle.startup().ready);
    const auto t0 = std::chrono::steady_clock::now();
    const packet ping{'x', 'y'};
    for (int i = 0; i < 8; ++i) {  // 800 ms of traffic, a message every 100 ms
        REQUIRE(talking.send(ping));
        std::uint8_t back[2];
        REQUIRE(talking.read_exact(back, 2));
        std::this_thread::sleep_for(100ms);
    }
    CHECK(idle.closed_by_peer());
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    REQUIRE(talking.send(ping));
    std::uint8_t back[2];
    CHECK(talking.read_exact(back, 2));
    REQUIRE(eventually([&] {
        return p.server().totals()[0].closed[static_cast<std::size_t>(proxy::close_reason::client_timeout)] == 1;
    }));
}

TEST_CASE("a refused connect to the leader makes the monitor look now, not at its next regular check", "[proxy][component]") {
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = free_port();  // the leader's PostgreSQL is gone; its Patroni has not said so yet
    cfg.health.interval = 20s;          // regular checks alone would not notice within the test
    cfg.health.fast_interval = 100ms;
    cfg.timeouts.wait_for_backend = 3s;
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    REQUIRE(eventually([&] { return p.topology()->readable.size() == 1; }));
    // Until rise/fall settle, members are checked at fast_interval anyway:
    // wait for both to be on their regular (20 s) pace.
    const auto settled = [&] {
        const auto a = members[0]->api.requests().size() + members[1]->api.requests().size();
        std::this_thread::sleep_for(400ms);
        return members[0]->api.requests().size() + members[1]->api.requests().size() == a;
    };
    REQUIRE(eventually(settled, 5s));
    const auto checks_before = members[1]->api.requests().size();
    // A switchover happens: pg1 now leads. Only a check can tell patroxy.
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    const auto t0 = std::chrono::steady_clock::now();
    raw_client c(p.port(0));
    const auto r = c.startup();
    CHECK(r.ready);
    CHECK(r.server_name == "pg1");
    CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
    CHECK(members[1]->api.requests().size() > checks_before);  // pg1 was asked because pg0 failed
}

TEST_CASE("a session whose member loses the leader role before answering waits for the next leader", "[proxy][component]") {
    silent_listener silent(16);  // pg0 takes connections and never answers, as while it is demoted
    auto members = cluster({"master", "replica"});
    auto cfg = config_for(members);
    cfg.members[0].port = silent.port();
    proxy_under_test p(cfg);
    REQUIRE(p.wait_for_leader(0));
    auto outcome = startup_in_background(p.port(0));
    REQUIRE(eventually([&] { return p.server().totals()[0].members[0].current == 1; }));  // relaying, unanswered
    members[0]->api.set_body(fake_patroni::answer("replica"));
    members[1]->api.set_body(fake_patroni::answer("master"));
    check_routed_to(outcome, "pg1");
    CHECK(p.server().totals()[0].closed[static_cast<std::size_t>(proxy::close_reason::backend_down)] == 0);
}
