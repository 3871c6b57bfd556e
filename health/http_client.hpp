#pragma once
// One HTTP/1.1 exchange at a time with one server, on the control
// io_context: the name resolved asynchronously (again after a failure, and
// every `reresolve_every`), plain TCP or TLS (CA verification, the server's
// name checked, an optional client certificate), the connection kept alive
// between exchanges, one deadline per exchange, and limits on what an answer
// may be (header 16 KiB, body `body_limit`, checked before any body is read).
// Patroni's REST API and etcd are both read through it; a slow, broken or
// hostile server only fails its own exchanges.
//
// Two kinds of exchange: request() reads a whole answer; stream() hands the
// body to a callback piece by piece as it arrives (etcd's watches), bounded by
// a silence timeout instead of a total one.

#include "conf/config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace patroxy::health {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

/// "Basic base64(user:password)", for an Authorization header.
std::string basic_auth_header(const conf::basic_auth& auth);

/// A TLS client context for `tls` (nullopt: the system's CAs, verification on);
/// throws std::runtime_error naming the file that cannot be used.
std::shared_ptr<net::ssl::context> make_tls_context(const std::optional<conf::tls_client_config>& tls);

/// Where and how an HTTP exchange failed, for callers that act on the kind
/// (a check that timed out after connecting is a hung API, a refused connect
/// a stopped one); the error text says the same for people.
struct http_failure {
    enum class step { none, resolve, connect, tls, request, answer, stream };
    step at = step::none;     ///< none: it did not fail
    bool timed_out = false;   ///< the exchange's deadline (or a stream's silence) passed
    bool refused = false;     ///< the connect was refused
};

class http_client : public std::enable_shared_from_this<http_client> {
public:
    struct target {
        std::string host;                        ///< IP literal or a name
        std::uint16_t port = 0;
        std::shared_ptr<net::ssl::context> tls;  ///< set: HTTPS
        bool verify_name = true;                 ///< check the certificate names `host`
    };
    using response = http::response<http::string_body>;
    using failure = http_failure;
    /// The exchange's outcome: an error (what failed: "connect: ...", "answer: timed out", ...) or the answer.
    using on_response = std::function<void(const std::string& error, response answer)>;
    /// A piece of a streamed body; return false to stop reading.
    using on_piece = std::function<bool(std::string_view piece)>;

    http_client(net::io_context& ioc, target t, std::size_t body_limit);
    ~http_client();

    /// Sends `req` and reads the whole answer within `timeout`.
    void request(http::request<http::string_body> req, std::chrono::milliseconds timeout, on_response done);
    /// Sends `req` and hands the answer's body to `piece` as it arrives; the
    /// exchange fails when nothing arrives for `silence`, and ends (`done`
    /// with the header, an empty body) when the server ends the body.
    void stream(http::request<http::string_body> req, std::chrono::milliseconds connect_timeout,
                std::chrono::milliseconds silence, on_piece piece, on_response done);
    /// Ends any exchange (its callback is not called) and the connection.
    void close();
    /// An exchange is in progress.
    bool busy() const { return busy_; }
    /// The last exchange ran on a kept-alive connection (it did not connect afresh).
    bool last_reused() const { return last_reused_; }
    /// How the last exchange failed (`at` none: it did not); set before its callback runs.
    const failure& last_failure() const { return last_failure_; }
    const target& where() const { return target_; }

private:
    struct state;
    void begin(std::shared_ptr<state> st);
    void resolve(std::shared_ptr<state> st);
    void connect(std::shared_ptr<state> st);
    void handshake(std::shared_ptr<state> st);
    void send(std::shared_ptr<state> st);
    void read_header(std::shared_ptr<state> st);
    void read_body(std::shared_ptr<state> st);
    void read_piece(std::shared_ptr<state> st);
    void finish(std::shared_ptr<state> st, std::string error = {}, failure why = {});
    /// Ends `st` with the failure of `at` on `ec` ("connect: timed out").
    void fail(std::shared_ptr<state> st, failure::step at, const beast::error_code& ec);
    void drop_connection();
    template <class F>
    void with_stream(F&& f);

    net::io_context& ioc_;
    target target_;
    std::size_t body_limit_;
    net::ip::tcp::resolver resolver_;
    std::optional<beast::tcp_stream> plain_;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
    std::vector<net::ip::tcp::endpoint> addresses_;
    std::chrono::steady_clock::time_point resolved_at_{};
    bool connected_ = false;
    bool last_reused_ = false;
    failure last_failure_;
    bool busy_ = false;
    beast::flat_buffer buffer_{64 * 1024};
    std::shared_ptr<state> current_;
};

}  // namespace patroxy::health
