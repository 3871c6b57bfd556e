#include "stats/http_server.hpp"

#include "base/log.hpp"
#include "base/text.hpp"
#include "health/patroni_client.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace patroxy::stats {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using clock = std::chrono::steady_clock;

namespace {
// A request is a request line and headers; a browser's are under 2 KiB.
constexpr std::size_t header_limit = 8 * 1024;
// A slow reader gets this long for one answer (status.json is a few hundred KiB at most).
constexpr std::chrono::seconds write_timeout{10};
// Out of descriptors: look again after this, instead of failing at once again.
constexpr std::chrono::milliseconds accept_back_off{100};
constexpr std::chrono::seconds accept_failure_log_interval{10};
// The workers are asked for their sessions at most this often.
constexpr std::chrono::seconds sessions_fresh_for{1};
// Wrong credentials: this many from one address within the window lock it out
// for the rest of the window.
constexpr int auth_failures_allowed = 10;
constexpr std::chrono::seconds auth_failure_window{60};
constexpr std::size_t auth_failures_tracked = 4096;
}  // namespace

// One client connection: read a request, answer, repeat while kept alive.
class http_server::connection : public std::enable_shared_from_this<connection> {
public:
    connection(tcp::socket socket, http_server& server)
        : stream_(std::move(socket)), server_(server), alive_(server.alive_), buffer_(header_limit) {
        beast::error_code ec;
        const auto peer = stream_.socket().remote_endpoint(ec);
        if (!ec) {
            client_ = peer.address();
        }
    }
    ~connection() { detach(); }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    void start(std::list<std::weak_ptr<connection>>::iterator at) {
        at_ = at;
        listed_ = true;
        do_read();
    }
    /// Answering a request now (not to be evicted).
    bool busy() const { return busy_; }
    /// Closes the socket and leaves the server's list at once.
    void close() {
        detach();
        beast::error_code ignored;
        stream_.socket().close(ignored);
    }

private:
    void detach() {
        if (listed_ && *alive_) {
            server_.live_.erase(at_);
        }
        listed_ = false;
    }
    void do_read() {
        busy_ = false;
        parser_.emplace();
        parser_->header_limit(header_limit);  // no body: empty_body refuses one
        stream_.expires_after(server_.cfg_.request_timeout);
        http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&connection::on_read, shared_from_this()));
    }
    void on_read(beast::error_code ec, std::size_t) {
        if (ec || !*alive_ || !listed_) {
            return;  // closed, timed out, too big or garbage: nothing to answer
        }
        busy_ = true;
        const auto& req = parser_->get();
        const auto auth = req[http::field::authorization];
        version_ = req.version();
        keep_alive_ = req.keep_alive();
        head_ = req.method() == http::verb::head;
        server_.respond(std::string_view(req.method_string().data(), req.method_string().size()),
                        std::string_view(req.target().data(), req.target().size()),
                        std::string_view(auth.data(), auth.size()), client_,
                        [self = shared_from_this()](http_server::response r) { self->send(std::move(r)); });
    }
    void send(http_server::response r) {
        if (!*alive_ || !listed_) {
            return;
        }
        response_ = {static_cast<http::status>(r.status), version_};
        response_.set(http::field::server, "patroxy/" PATROXY_VERSION);
        response_.set(http::field::content_type, r.content_type);
        response_.set(http::field::cache_control, "no-store");
        if (r.status == 401) {
            response_.set(http::field::www_authenticate, "Basic realm=\"patroxy\"");
        }
        response_.keep_alive(keep_alive_);
        response_.body() = head_ ? std::string{} : std::move(r.body);
        response_.prepare_payload();
        stream_.expires_after(write_timeout);
        http::async_write(stream_, response_, beast::bind_front_handler(&connection::on_write, shared_from_this()));
    }
    void on_write(beast::error_code ec, std::size_t) {
        if (!ec && keep_alive_ && *alive_ && listed_) {
            do_read();
        }
    }

    beast::tcp_stream stream_;
    http_server& server_;
    std::shared_ptr<bool> alive_;
    net::ip::address client_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::empty_body>> parser_;
    http::response<http::string_body> response_;
    std::list<std::weak_ptr<connection>>::iterator at_;
    bool listed_ = false;
    bool busy_ = false;
    bool keep_alive_ = false;
    bool head_ = false;
    unsigned version_ = 11;
};

http_server::http_server(net::io_context& ioc, const conf::stats_config& cfg, collector collect,
                         session_lister list_sessions, std::optional<int> inherited)
    : ioc_(ioc),
      cfg_(cfg),
      collect_(std::move(collect)),
      list_sessions_(std::move(list_sessions)),
      acceptor_(ioc),
      sampler_(ioc),
      accept_pause_(ioc) {
    const tcp::endpoint ep(net::ip::make_address(cfg.bind), cfg.port);
    beast::error_code ec;
    if (inherited) {
        acceptor_.assign(ep.protocol(), *inherited, ec);  // handed over by the previous process: listening already
    } else {
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
    }
    if (ec) {
        throw std::runtime_error("stats server cannot listen on " + cfg.bind + ":" + std::to_string(cfg.port) + ": " +
                                 ec.message());
    }
    apply(cfg);
}

void http_server::apply(const conf::stats_config& cfg) {
    cfg_ = cfg;
    expected_auth_ = cfg.auth ? health::basic_auth_header(*cfg.auth) : std::string{};
}

int http_server::native_handle() { return acceptor_.native_handle(); }

http_server::~http_server() {
    *alive_ = false;
    for (auto& w : live_) {
        if (auto c = w.lock()) {
            beast::error_code ignored;
            c->close();
        }
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
    accept_pause_.cancel();
}

void http_server::do_accept() {
    acceptor_.async_accept([this, alive = alive_](beast::error_code ec, tcp::socket socket) {
        if (!*alive || ec == net::error::operation_aborted || !acceptor_.is_open()) {
            return;
        }
        if (ec) {
            // Out of descriptors (or memory): trying again at once would spin.
            const auto now = clock::now();
            if (now - accept_failure_logged_ >= accept_failure_log_interval) {
                accept_failure_logged_ = now;
                PATROXY_LOG(error, "stats") << "accept failed: " << ec.message() << " (retrying every "
                                            << accept_back_off.count() << " ms)";
            }
            accept_pause_.expires_after(accept_back_off);
            accept_pause_.async_wait([this, alive](beast::error_code wec) {
                if (!wec && *alive) {
                    do_accept();
                }
            });
            return;
        }
        if (live_.size() < static_cast<std::size_t>(cfg_.maxconn) || make_room()) {
            auto c = std::make_shared<connection>(std::move(socket), *this);
            live_.push_back(c);
            c->start(std::prev(live_.end()));
        }  // else every connection is busy answering: the new one is closed unread
        do_accept();
    });
}

bool http_server::make_room() {
    for (auto it = live_.begin(); it != live_.end(); ++it) {
        if (auto c = it->lock(); c && !c->busy()) {
            c->close();  // leaves live_
            return true;
        }
    }
    return false;
}

void http_server::sample() {
    auto s = collect_();
    std::map<std::string, std::uint64_t> accepted;
    for (const auto& [name, l] : s.listeners) {
        accepted[name] = l.accepted;
    }
    samples_.emplace_back(clock::now(), std::move(accepted));
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
    if (!samples_.empty()) {
        const auto& [then, accepted] = samples_.front();
        const double secs = std::chrono::duration<double>(clock::now() - then).count();
        for (const auto& [name, l] : s.listeners) {
            const auto before = accepted.find(name);
            if (secs > 0.5 && before != accepted.end()) {
                s.session_rate[name] = static_cast<double>(l.accepted - before->second) / secs;
            }
        }
    }
    s.stats_connections = live_.size();
    return s;
}

bool http_server::authorized(std::string_view authorization) const {
    return expected_auth_.empty() || base::constant_time_equal(authorization, expected_auth_);
}

bool http_server::locked_out(const net::ip::address& client, clock::time_point now) {
    const auto it = auth_failures_.find(client);
    if (it == auth_failures_.end()) {
        return false;
    }
    if (now - it->second.since >= auth_failure_window) {
        auth_failures_.erase(it);
        return false;
    }
    return it->second.count >= auth_failures_allowed;
}

void http_server::count_failure(const net::ip::address& client, clock::time_point now) {
    if (auth_failures_.size() >= auth_failures_tracked && auth_failures_.count(client) == 0) {
        std::erase_if(auth_failures_, [&](const auto& kv) { return now - kv.second.since >= auth_failure_window; });
        if (auth_failures_.size() >= auth_failures_tracked) {
            auth_failures_.clear();  // a spray of addresses: start over rather than grow
        }
    }
    auto& f = auth_failures_[client];
    if (f.count == 0 || now - f.since >= auth_failure_window) {
        f = {0, now};
    }
    if (++f.count == auth_failures_allowed) {
        PATROXY_LOG(warn, "stats") << "client " << client.to_string() << ": " << auth_failures_allowed
                                   << " wrong credentials within " << auth_failure_window.count()
                                   << "s; refused (429) until the window ends";
    }
}

void http_server::with_sessions(std::function<void(std::vector<proxy::session_view>)> use) {
    const auto now = clock::now();
    if (sessions_at_ != clock::time_point{} && now - sessions_at_ < sessions_fresh_for) {
        return use(sessions_cache_);
    }
    waiting_for_sessions_.push_back(std::move(use));
    if (gathering_) {
        return;  // one question to the workers answers every request waiting
    }
    gathering_ = true;
    list_sessions_(session_list_limit, [this, alive = alive_](std::vector<proxy::session_view> sessions) {
        if (!*alive) {
            return;
        }
        sessions_cache_ = std::move(sessions);
        sessions_at_ = clock::now();
        gathering_ = false;
        auto waiting = std::move(waiting_for_sessions_);
        waiting_for_sessions_.clear();
        for (auto& w : waiting) {
            w(sessions_cache_);
        }
    });
}

void http_server::respond(std::string_view method, std::string_view target, std::string_view authorization,
                          const net::ip::address& client, std::function<void(response)> done) {
    const auto path = target.substr(0, target.find('?'));
    const auto now = clock::now();
    const bool guarded = !expected_auth_.empty() && path != "/health";
    if (guarded && locked_out(client, now)) {
        return done({429, "text/plain", "too many wrong credentials from this address; try again later\n"});
    }
    // The answer, with any failure inside it contained to this request.
    auto answer = [this, client, m = std::string(method), t = std::string(target), a = std::string(authorization),
                   done = std::move(done)](std::vector<proxy::session_view> sessions) {
        response r;
        try {
            r = handle(m, t, a, std::move(sessions));
        } catch (const std::exception& e) {
            PATROXY_LOG(error, "stats") << "request " << base::field(base::clip_utf8(t)) << " failed: " << e.what();
            r = {500, "text/plain", "internal error\n"};
        }
        if (r.status == 401) {
            count_failure(client, clock::now());
        }
        done(std::move(r));
    };
    const bool lists_sessions = path == "/" || path == "/index.html" || path == "/status.json";
    if (!list_sessions_ || !lists_sessions || (method != "GET" && method != "HEAD") || !authorized(authorization)) {
        return answer({});
    }
    with_sessions(std::move(answer));
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
            std::string to;
            for (const auto& c : s.clusters) {
                if (c.topology && c.topology->leader) {
                    to += (to.empty() ? "" : ", ") + (s.clusters.size() > 1 ? c.label + ": " : std::string{}) +
                          c.topology->members[*c.topology->leader].name;
                }
            }
            if (s.clusters.empty() && s.topology->leader) {
                to = s.topology->members[*s.topology->leader].name;
            }
            return {200, "text/plain", "OK: writes go to " + to + "\n"};
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
            return {200, "application/json",
                    to_json(s).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
        }
        return {200, "text/html; charset=utf-8", render_html(s)};
    }
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(current())};
    }
    return {404, "text/plain", "not found: try /, /status.json, /metrics or /health\n"};
}

}  // namespace patroxy::stats
