#include "stats/http_server.hpp"

#include "app/log.hpp"
#include "health/patroni_client.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace patroxy::stats {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// One client connection: read a request, answer, repeat while kept alive.
class connection : public std::enable_shared_from_this<connection> {
public:
    connection(tcp::socket socket, http_server& server) : stream_(std::move(socket)), server_(server) {}
    void start() { do_read(); }

private:
    void do_read() {
        request_ = {};
        stream_.expires_after(std::chrono::seconds(30));
        http::async_read(stream_, buffer_, request_, beast::bind_front_handler(&connection::on_read, shared_from_this()));
    }
    void on_read(beast::error_code ec, std::size_t) {
        if (ec) {
            return;  // closed, timed out or garbage: nothing to answer
        }
        const auto auth = request_[http::field::authorization];
        server_.respond(std::string_view(request_.method_string().data(), request_.method_string().size()),
                        std::string_view(request_.target().data(), request_.target().size()),
                        std::string_view(auth.data(), auth.size()),
                        [self = shared_from_this()](http_server::response r) { self->send(std::move(r)); });
    }
    void send(http_server::response r) {
        response_ = {static_cast<http::status>(r.status), request_.version()};
        response_.set(http::field::server, "patroxy/" PATROXY_VERSION);
        response_.set(http::field::content_type, r.content_type);
        response_.set(http::field::cache_control, "no-store");
        if (r.status == 401) {
            response_.set(http::field::www_authenticate, "Basic realm=\"patroxy\"");
        }
        response_.keep_alive(request_.keep_alive());
        response_.body() = request_.method() == http::verb::head ? std::string{} : std::move(r.body);
        response_.prepare_payload();
        http::async_write(stream_, response_, beast::bind_front_handler(&connection::on_write, shared_from_this()));
    }
    void on_write(beast::error_code ec, std::size_t) {
        if (!ec && response_.keep_alive()) {
            do_read();
        }
    }

    beast::tcp_stream stream_;
    http_server& server_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
};

}  // namespace

http_server::http_server(net::io_context& ioc, const conf::stats_config& cfg, collector collect,
                         session_lister list_sessions)
    : ioc_(ioc),
      cfg_(cfg),
      collect_(std::move(collect)),
      list_sessions_(std::move(list_sessions)),
      acceptor_(ioc),
      sampler_(ioc) {
    const tcp::endpoint ep(net::ip::make_address(cfg.bind), cfg.port);
    beast::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) {
        acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec) {
        acceptor_.bind(ep, ec);
    }
    if (!ec) {
        acceptor_.listen(net::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        throw std::runtime_error("stats server cannot listen on " + cfg.bind + ":" + std::to_string(cfg.port) + ": " +
                                 ec.message());
    }
    if (cfg.auth) {
        expected_auth_ = health::basic_auth_header(*cfg.auth);
    }
}

std::uint16_t http_server::port() const { return acceptor_.local_endpoint().port(); }

void http_server::start() {
    do_accept();
    sample();
}

void http_server::stop() {
    beast::error_code ignored;
    acceptor_.close(ignored);
    sampler_.cancel();
}

void http_server::do_accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
            return;
        }
        if (!ec) {
            std::make_shared<connection>(std::move(socket), *this)->start();
        }
        do_accept();
    });
}

void http_server::sample() {
    auto s = collect_();
    std::vector<std::uint64_t> accepted;
    for (const auto& l : s.listeners) {
        accepted.push_back(l.accepted);
    }
    samples_.emplace_back(std::chrono::steady_clock::now(), std::move(accepted));
    while (samples_.size() > 11) {
        samples_.pop_front();
    }
    sampler_.expires_after(std::chrono::seconds(1));
    sampler_.async_wait([this](beast::error_code ec) {
        if (!ec) {
            sample();
        }
    });
}

status http_server::current() {
    auto s = collect_();
    s.session_rate.assign(s.listeners.size(), 0.0);
    if (!samples_.empty()) {
        const auto& [then, accepted] = samples_.front();
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - then).count();
        for (std::size_t l = 0; l < s.listeners.size() && l < accepted.size() && secs > 0.5; ++l) {
            s.session_rate[l] = static_cast<double>(s.listeners[l].accepted - accepted[l]) / secs;
        }
    }
    return s;
}

bool http_server::authorized(std::string_view authorization) const {
    return expected_auth_.empty() || authorization == expected_auth_;
}

void http_server::respond(std::string_view method, std::string_view target, std::string_view authorization,
                          std::function<void(response)> done) {
    const auto path = target.substr(0, target.find('?'));
    const bool lists_sessions = path == "/" || path == "/index.html" || path == "/status.json";
    if (!list_sessions_ || !lists_sessions || (method != "GET" && method != "HEAD") || !authorized(authorization)) {
        return done(handle(method, target, authorization));
    }
    // The views below outlive this call: keep copies.
    list_sessions_(session_list_limit, [this, m = std::string(method), t = std::string(target),
                                        a = std::string(authorization),
                                        done = std::move(done)](std::vector<proxy::session_view> sessions) {
        done(handle(m, t, a, std::move(sessions)));
    });
}

http_server::response http_server::handle(std::string_view method, std::string_view target,
                                          std::string_view authorization, std::vector<proxy::session_view> sessions) {
    const auto path = target.substr(0, target.find('?'));
    if (method != "GET" && method != "HEAD") {
        return {405, "text/plain", "only GET and HEAD\n"};
    }
    if (path == "/health") {
        // Open to load balancers and keepalived-style checks, even with auth on.
        const auto s = collect_();
        if (can_route_writes(s)) {
            return {200, "text/plain", "OK: writes go to " + s.topology->members[*s.topology->leader].name + "\n"};
        }
        return {503, "text/plain", "no leader: writes cannot be routed\n"};
    }
    if (!authorized(authorization)) {
        return {401, "text/plain", "authentication required\n"};
    }
    if (path == "/" || path == "/index.html" || path == "/status.json") {
        auto s = current();
        s.sessions = std::move(sessions);
        if (path == "/status.json") {
            return {200, "application/json", to_json(s).dump(2) + "\n"};
        }
        return {200, "text/html; charset=utf-8", render_html(s)};
    }
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(current())};
    }
    return {404, "text/plain", "not found: try /, /status.json, /metrics or /health\n"};
}

}  // namespace patroxy::stats
