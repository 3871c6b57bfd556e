#pragma once
// Polls one member's `GET /patroni` forever on the control io_context, over
// HTTP or HTTPS (health/http_client.hpp: one deadline per check, so a hung or
// garbage-speaking API costs only its own member a failed check; the
// connection kept alive between checks). On request it also asks the
// member's `GET /cluster` for the lock holder as its Patroni sees it.

#include "conf/config.hpp"
#include "health/http_client.hpp"
#include "health/member_tracker.hpp"

#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <optional>

namespace patroxy::health {

class patroni_client : public std::enable_shared_from_this<patroni_client> {
public:
    /// Called with each result; returns how long to wait before the next check.
    using on_result = std::function<std::chrono::milliseconds(check_result)>;
    /// The lock holder a /cluster answer names (empty when none), or an error.
    using on_cluster = std::function<void(std::optional<std::string> holder, const std::string& error)>;

    patroni_client(net::io_context& ioc, const conf::member_config& member, std::chrono::milliseconds timeout,
                   on_result callback);

    /// Starts the check loop.
    void start();
    /// Brings the next check forward to at most `within` from now (no-op while a check runs).
    void check_within(std::chrono::milliseconds within);
    /// Stops the loop and closes the connections.
    void stop();
    /// One GET /cluster (on a connection of its own, so checks keep their pace).
    void ask_cluster(on_cluster done);

private:
    void schedule(std::chrono::milliseconds delay);
    void begin_check();
    void on_answer(const std::string& error, http_client::response res);
    void finish(check_result r);
    http::request<http::string_body> get(const char* target) const;

    net::steady_timer timer_;
    std::shared_ptr<http_client> http_;
    std::shared_ptr<http_client> cluster_http_;
    std::string host_header_;
    std::string authorization_;
    std::string setup_error_;   ///< the TLS context could not be made: every check fails with it
    std::chrono::milliseconds timeout_;
    on_result callback_;
    bool running_ = false;    ///< a check is in flight
    bool stopped_ = false;
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point next_at_{};
};

/// The lock holder a Patroni /cluster body names: the member whose role is
/// "leader" or "standby_leader"; empty when none does; nullopt when unreadable.
std::optional<std::string> parse_cluster_leader(std::string_view body, std::string& why);

}  // namespace patroxy::health
