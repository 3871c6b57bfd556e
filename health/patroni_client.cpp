#include "health/patroni_client.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace patroxy::health {
namespace {
constexpr std::size_t max_body = 256 * 1024;  // a /patroni answer is ~1 KiB; refuse anything absurd
}  // namespace

std::string basic_auth_header(const conf::basic_auth& auth) {
    namespace b64 = beast::detail::base64;
    const auto plain = auth.username + ":" + auth.password;
    std::string out(b64::encoded_size(plain.size()), '\0');
    out.resize(b64::encode(out.data(), plain.data(), plain.size()));
    return "Basic " + out;
}

patroni_client::patroni_client(net::io_context& ioc, const conf::member_config& member,
                               std::chrono::milliseconds timeout, on_result callback)
    : timer_(ioc),
      stream_(ioc),
      endpoint_(net::ip::make_address(member.api.host), member.api.port),
      timeout_(timeout),
      callback_(std::move(callback)) {
    request_.method(http::verb::get);
    request_.target("/patroni");
    request_.version(11);
    const auto host = endpoint_.address().is_v6() ? "[" + member.api.host + "]" : member.api.host;
    request_.set(http::field::host, host + ":" + std::to_string(member.api.port));
    request_.set(http::field::user_agent, "patroxy/" PATROXY_VERSION);
    request_.set(http::field::accept, "application/json");
    request_.keep_alive(true);
    if (member.api_auth) {
        request_.set(http::field::authorization, basic_auth_header(*member.api_auth));
    }
}

void patroni_client::start() { schedule(std::chrono::milliseconds{0}); }

void patroni_client::stop() {
    stopped_ = true;
    timer_.cancel();
    beast::error_code ignored;
    stream_.socket().close(ignored);
}

void patroni_client::schedule(std::chrono::milliseconds delay) {
    if (stopped_) {
        return;
    }
    next_at_ = std::chrono::steady_clock::now() + delay;
    timer_.expires_at(next_at_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) {
            self->begin_check();
        }
    });
}

void patroni_client::check_within(std::chrono::milliseconds within) {
    if (stopped_ || running_) {
        return;
    }
    if (next_at_ > std::chrono::steady_clock::now() + within) {
        schedule(within);  // re-arming cancels the pending wait
    }
}

void patroni_client::begin_check() {
    if (stopped_ || running_) {
        return;
    }
    running_ = true;
    started_ = std::chrono::steady_clock::now();
    // One deadline for the whole check; tcp_stream closes the socket when it passes.
    stream_.expires_after(timeout_);
    if (connected_) {
        reused_ = true;
        do_write();
    } else {
        reused_ = false;
        do_connect();
    }
}

void patroni_client::do_connect() {
    stream_.async_connect(endpoint_, beast::bind_front_handler(&patroni_client::on_connect, shared_from_this()));
}

void patroni_client::on_connect(beast::error_code ec) {
    if (ec) {
        return fail("connect", ec);
    }
    connected_ = true;
    beast::error_code ignored;
    stream_.socket().set_option(net::ip::tcp::no_delay(true), ignored);
    do_write();
}

void patroni_client::do_write() {
    http::async_write(stream_, request_, beast::bind_front_handler(&patroni_client::on_write, shared_from_this()));
}

void patroni_client::on_write(beast::error_code ec, std::size_t) {
    if (ec) {
        return fail("request", ec);
    }
    parser_.emplace();
    parser_->body_limit(max_body);
    parser_->header_limit(16 * 1024);
    buffer_.clear();
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&patroni_client::on_read, shared_from_this()));
}

void patroni_client::on_read(beast::error_code ec, std::size_t) {
    if (ec) {
        return fail("answer", ec);
    }
    auto& res = parser_->get();
    check_result r;
    r.http_status = static_cast<int>(res.result_int());
    if (!res.keep_alive()) {
        connected_ = false;
        beast::error_code ignored;
        stream_.socket().close(ignored);
    }
    // Patroni answers 503 with a full JSON body when PostgreSQL is not running:
    // that is a definite answer, not a failed check.
    std::string why;
    r.report = parse_patroni(res.body(), why);
    r.answered = r.report.has_value();
    if (!r.answered) {
        r.error = "HTTP " + std::to_string(r.http_status) + ": " + why;
    }
    finish(std::move(r));
}

void patroni_client::fail(std::string what, beast::error_code ec) {
    if (stopped_) {
        return;
    }
    connected_ = false;
    beast::error_code ignored;
    stream_.socket().close(ignored);
    // A kept-alive connection the server closed while idle is not the member's
    // fault: retry once on a fresh one, within the same deadline.
    if (reused_ && ec != beast::error::timeout) {
        reused_ = false;
        do_connect();
        return;
    }
    check_result r;
    r.error = what + ": " + (ec == beast::error::timeout ? std::string("timed out") : ec.message());
    finish(std::move(r));
}

void patroni_client::finish(check_result r) {
    running_ = false;
    r.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    r.at = std::chrono::system_clock::now();
    stream_.expires_never();
    const auto next = callback_(std::move(r));
    schedule(next);
}

}  // namespace patroxy::health
