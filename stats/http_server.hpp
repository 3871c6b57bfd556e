#pragma once
// The stats server on :7000 (Boost.Beast, on the control io_context): `/` the
// HTML page, `/status.json`, `/metrics`, `/health`. It only reads snapshots
// and counters, so it never blocks or slows the data path.

#include "conf/config.hpp"
#include "stats/status.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <functional>

namespace patroxy::stats {

class http_server {
public:
    using collector = std::function<status()>;
    /// Asks the workers for their sessions and calls back on this io_context.
    using session_lister =
        std::function<void(std::size_t limit, std::function<void(std::vector<proxy::session_view>)>)>;

    /// Binds (throws with the address on failure); serves once start() runs.
    /// Without a lister the page and /status.json list no sessions.
    http_server(boost::asio::io_context& ioc, const conf::stats_config& cfg, collector collect,
                session_lister list_sessions = {});
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
    /// Like handle(), but first gathers the sessions for the pages that list them.
    void respond(std::string_view method, std::string_view target, std::string_view authorization,
                 std::function<void(response)> done);

private:
    void do_accept();
    void sample();
    status current();
    bool authorized(std::string_view authorization) const;

    boost::asio::io_context& ioc_;
    const conf::stats_config& cfg_;
    collector collect_;
    session_lister list_sessions_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer sampler_;
    std::string expected_auth_;
    /// (time, accepted per listener) once a second, for the last 10 s.
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::vector<std::uint64_t>>> samples_;
};

}  // namespace patroxy::stats
