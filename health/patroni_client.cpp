#include "health/patroni_client.hpp"

#include "health/patroni_report.hpp"

#include <nlohmann/json.hpp>

namespace patroxy::health {
namespace {
constexpr std::size_t max_body = 256 * 1024;  // a /patroni answer is ~1 KiB; refuse anything absurd
}  // namespace

std::optional<std::string> parse_cluster_leader(std::string_view body, std::string& why) {
    const auto doc = parse_json_bounded(body, max_json_depth, why);
    if (!doc.is_object() || !doc.contains("members") || !doc["members"].is_array()) {
        why = why.empty() ? "not a /cluster answer" : why;
        return std::nullopt;
    }
    for (const auto& m : doc["members"]) {
        if (!m.is_object()) {
            continue;
        }
        const auto role = m.find("role");
        const auto name = m.find("name");
        if (role != m.end() && role->is_string() && name != m.end() && name->is_string() &&
            (role->get<std::string>() == "leader" || role->get<std::string>() == "standby_leader")) {
            return name->get<std::string>();
        }
    }
    return std::string{};
}

patroni_client::patroni_client(net::io_context& ioc, const conf::member_config& member,
                               std::chrono::milliseconds timeout, on_result callback)
    : timer_(ioc), timeout_(timeout), callback_(std::move(callback)) {
    http_client::target t;
    t.host = member.api.host;
    t.port = member.api.port;
    if (member.api.https) {
        try {
            t.tls = make_tls_context(member.api_tls);
            t.verify_name = !member.api_tls || member.api_tls->verify;
        } catch (const std::exception& e) {
            setup_error_ = std::string("TLS: ") + e.what();
        }
    }
    http_ = std::make_shared<http_client>(ioc, t, max_body);
    cluster_http_ = std::make_shared<http_client>(ioc, t, max_body);
    const bool v6 = member.api.host.find(':') != std::string::npos;
    host_header_ = (v6 ? "[" + member.api.host + "]" : member.api.host) + ":" + std::to_string(member.api.port);
    if (member.api_auth) {
        authorization_ = basic_auth_header(*member.api_auth);
    }
}

http::request<http::string_body> patroni_client::get(const char* target) const {
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host_header_);
    req.set(http::field::user_agent, "patroxy/" PATROXY_VERSION);
    req.set(http::field::accept, "application/json");
    req.keep_alive(true);
    if (!authorization_.empty()) {
        req.set(http::field::authorization, authorization_);
    }
    return req;
}

void patroni_client::start() { schedule(std::chrono::milliseconds{0}); }

void patroni_client::stop() {
    stopped_ = true;
    timer_.cancel();
    http_->close();
    cluster_http_->close();
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
    if (!setup_error_.empty()) {
        check_result r;
        r.error = setup_error_;
        return finish(std::move(r));
    }
    http_->request(get("/patroni"), timeout_,
                   [self = shared_from_this()](const std::string& error, http_client::response res) {
                       self->on_answer(error, std::move(res));
                   });
}

void patroni_client::on_answer(const std::string& error, http_client::response res) {
    if (stopped_) {
        return;
    }
    check_result r;
    if (!error.empty()) {
        r.error = error;
        // Timed out at the connect: a host gone or a full backlog; after it
        // (TLS, request, answer) on a fresh connection: the API hangs.
        using step = http_client::failure::step;
        const auto& why = http_->last_failure();
        r.connect_timed_out = why.at == step::connect && why.timed_out;
        r.refused = why.at == step::connect && why.refused;
        r.hung = why.timed_out && why.at != step::connect && why.at != step::resolve && !http_->last_reused();
        return finish(std::move(r));
    }
    r.http_status = static_cast<int>(res.result_int());
    // Patroni answers 503 with a full JSON body when PostgreSQL is not running:
    // that is a definite answer, not a failed check.
    std::string why;
    r.report = parse_patroni(res.body(), why);
    r.answered = r.report.has_value();
    if (!r.answered) {
        r.error = "HTTP " + std::to_string(r.http_status) + ": " + why;
    } else {
        r.body = std::move(res.body());
    }
    finish(std::move(r));
}

void patroni_client::ask_cluster(on_cluster done) {
    if (stopped_ || cluster_http_->busy()) {
        return;
    }
    if (!setup_error_.empty()) {
        return done(std::nullopt, setup_error_);
    }
    cluster_http_->request(get("/cluster"), timeout_,
                           [done = std::move(done)](const std::string& error, http_client::response res) {
                               if (!error.empty()) {
                                   return done(std::nullopt, error);
                               }
                               std::string why;
                               auto holder = parse_cluster_leader(res.body(), why);
                               done(std::move(holder), why);
                           });
}

void patroni_client::finish(check_result r) {
    running_ = false;
    r.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    r.at = std::chrono::system_clock::now();
    r.steady_at = std::chrono::steady_clock::now();
    const auto next = callback_(std::move(r));
    schedule(next);
}

}  // namespace patroxy::health
