#pragma once
// The stats server on :7000 (Boost.Beast): `/` the HTML page, `/status.json`,
// `/metrics`, `/health`. It runs on an io_context (and, in the daemon, a
// thread) of its own, so that whatever its clients do, health checks, VRRP
// and the data path keep their timing; it only reads snapshots and counters.
//
// What a client can make it spend is bounded: `stats.maxconn` connections
// (past it the oldest connection that has not sent a whole request is
// closed), headers of 8 KiB and no body at all, `stats.request_timeout` for a
// request, a pause instead of a spin when out of descriptors, credentials
// compared in constant time and a lock-out after repeated wrong ones, and the
// session list gathered from the workers at most once a second whatever the
// number of requests.

#include "conf/config.hpp"
#include "stats/status.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>

namespace patroxy::stats {

class http_server {
public:
    using collector = std::function<status()>;
    /// Asks the workers for their sessions and calls back on this io_context.
    using session_lister =
        std::function<void(std::size_t limit, std::function<void(std::vector<proxy::session_view>)>)>;

    /// Binds (throws with the address on failure), or takes `inherited`, a
    /// listening socket a previous process handed over; serves once start()
    /// runs. Without a lister the page and /status.json list no sessions.
    http_server(boost::asio::io_context& ioc, const conf::stats_config& cfg, collector collect,
                session_lister list_sessions = {}, std::optional<int> inherited = std::nullopt);
    /// New settings from a reload (auth, limits); on this server's io_context.
    void apply(const conf::stats_config& cfg);
    /// The listening socket (an upgrade hands it over).
    int native_handle();
    ~http_server();
    void start();
    void stop();
    std::uint16_t port() const;

    /// Builds the answer to one request (pure apart from the collector); public for tests.
    struct response {
        int status = 200;
        std::string content_type;
        std::string body;
    };
    response handle(std::string_view method, std::string_view target, std::string_view authorization,
                    std::vector<proxy::session_view> sessions = {});
    /// Like handle(), but first gathers the sessions for the pages that list
    /// them (from the cache when it is fresh) and applies the lock-out of a
    /// client address that sent wrong credentials too often.
    void respond(std::string_view method, std::string_view target, std::string_view authorization,
                 const boost::asio::ip::address& client, std::function<void(response)> done);

    /// Open connections now (tests, the page).
    std::size_t connections() const { return live_.size(); }

    class connection;

private:
    friend class connection;
    void do_accept();
    void sample();
    status current();
    bool authorized(std::string_view authorization) const;
    /// Makes room for one more connection: closes the oldest that has not
    /// sent a whole request yet; false when every one is busy answering.
    bool make_room();
    void with_sessions(std::function<void(std::vector<proxy::session_view>)> use);
    /// The address is locked out after too many wrong credentials.
    bool locked_out(const boost::asio::ip::address& client, std::chrono::steady_clock::time_point now);
    void count_failure(const boost::asio::ip::address& client, std::chrono::steady_clock::time_point now);

    boost::asio::io_context& ioc_;
    conf::stats_config cfg_;
    collector collect_;
    session_lister list_sessions_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer sampler_;
    boost::asio::steady_timer accept_pause_;
    std::chrono::steady_clock::time_point accept_failure_logged_{};
    std::string expected_auth_;
    /// Open connections, oldest first.
    std::list<std::weak_ptr<connection>> live_;
    /// (time, accepted per listener) once a second, for the last 10 s.
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::map<std::string, std::uint64_t>>> samples_;
    // The workers' session list, asked for at most once per second.
    std::vector<proxy::session_view> sessions_cache_;
    std::chrono::steady_clock::time_point sessions_at_{};
    bool gathering_ = false;
    std::vector<std::function<void(std::vector<proxy::session_view>)>> waiting_for_sessions_;
    // Wrong credentials per client address, in a window.
    struct failures {
        int count = 0;
        std::chrono::steady_clock::time_point since{};
    };
    std::map<boost::asio::ip::address, failures> auth_failures_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace patroxy::stats
