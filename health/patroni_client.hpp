#pragma once
// Polls one member's `GET /patroni` forever on the control io_context. Each
// check has one deadline covering connect, request and answer, so a hung or
// garbage-speaking API costs only its own member a failed check. The
// connection is kept alive between checks.

#include "conf/config.hpp"
#include "health/member_tracker.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>
#include <memory>
#include <optional>

namespace patroxy::health {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

/// "Basic base64(user:password)", for an Authorization header.
std::string basic_auth_header(const conf::basic_auth& auth);

class patroni_client : public std::enable_shared_from_this<patroni_client> {
public:
    /// Called with each result; returns how long to wait before the next check.
    using on_result = std::function<std::chrono::milliseconds(check_result)>;

    patroni_client(net::io_context& ioc, const conf::member_config& member, std::chrono::milliseconds timeout,
                   on_result callback);

    /// Starts the check loop.
    void start();
    /// Brings the next check forward to at most `within` from now (no-op while a check runs).
    void check_within(std::chrono::milliseconds within);
    /// Stops the loop and closes the connection.
    void stop();

private:
    void schedule(std::chrono::milliseconds delay);
    void begin_check();
    void do_connect();
    void on_connect(beast::error_code ec);
    void do_write();
    void on_write(beast::error_code ec, std::size_t);
    void on_read(beast::error_code ec, std::size_t);
    void finish(check_result r);
    void fail(std::string what, beast::error_code ec);

    net::steady_timer timer_;
    beast::tcp_stream stream_;
    net::ip::tcp::endpoint endpoint_;
    http::request<http::empty_body> request_;
    beast::flat_buffer buffer_;
    std::optional<http::response_parser<http::string_body>> parser_;
    std::chrono::milliseconds timeout_;
    on_result callback_;
    bool connected_ = false;
    bool reused_ = false;     ///< this check runs on a kept-alive connection
    bool running_ = false;    ///< a check is in flight
    bool stopped_ = false;
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point next_at_{};
};

}  // namespace patroxy::health
