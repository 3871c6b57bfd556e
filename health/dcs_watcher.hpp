#pragma once
// Keeps a view of Patroni's DCS current, on the control io_context, never
// blocking it: etcd v3 through its JSON gateway (a range of the cluster's
// prefix, then a watch from the next revision: newline-delimited JSON over a
// chunked answer) or etcd v2 (a recursive GET, then long-polls with
// wait=true&waitIndex). A full range again every `resync_interval` covers
// etcd 3.4's lost watch events and notices a member that stopped answering;
// compaction, cancels, errors and ends of stream start over with a range.
// Endpoints are tried in turn; v3 authenticates for a token (again when it
// expires), v2 sends basic auth; TLS with a CA and a client certificate.
//
// The view and every etcd answer are decoded in health/dcs.cpp (pure).

#include "conf/config.hpp"
#include "health/dcs.hpp"
#include "health/http_client.hpp"

#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>

namespace patroxy::health {

class dcs_watcher : public std::enable_shared_from_this<dcs_watcher> {
public:
    /// What the stats page shows about the DCS.
    struct status {
        bool connected = false;                         ///< the last exchange with etcd worked
        std::string endpoint;                           ///< host:port in use
        std::int64_t revision = 0;
        std::chrono::system_clock::time_point last_event{};   ///< the last answer or event
        std::string last_error;
        std::uint64_t errors = 0;
        std::uint64_t events = 0;
        std::uint64_t resyncs = 0;
    };
    /// Each new view (a range, watch events, a resync that found a difference).
    using on_view = std::function<void(const dcs_view&)>;

    dcs_watcher(net::io_context& ioc, const conf::dcs_config& cfg, on_view view);
    void start();
    void stop();
    const status& state() const { return status_; }
    /// When etcd last answered (an event, a range, a watch start); the epoch before.
    std::chrono::steady_clock::time_point last_contact() const { return last_contact_; }

private:
    void connect_next(std::string why);
    void authenticate();
    void range(bool resync);
    void on_range(const std::string& error, http_client::response res, bool resync);
    void watch();
    bool on_watch_piece(std::string_view piece);
    void on_watch_end(const std::string& error);
    void wait_v2();
    void arm_resync();
    void contact();
    void fail(std::string why);
    http::request<http::string_body> post(const std::string& target, std::string body) const;
    http::request<http::string_body> get(const std::string& target) const;
    std::shared_ptr<http_client> client_for(std::size_t endpoint);

    net::io_context& ioc_;
    conf::dcs_config cfg_;
    on_view on_view_;
    std::string prefix_;
    std::shared_ptr<net::ssl::context> tls_;
    std::string setup_error_;
    std::size_t endpoint_ = 0;
    std::shared_ptr<http_client> unary_;     ///< ranges, auth, v2 GETs
    std::shared_ptr<http_client> stream_;    ///< the watch (v3) or the long poll (v2)
    std::string token_;                      ///< v3 auth
    dcs_view view_;
    bool have_view_ = false;
    std::string line_;                       ///< a watch message still arriving
    std::uint64_t generation_ = 0;           ///< bumps per (re)connection: stale callbacks find it moved on
    net::steady_timer retry_timer_;
    net::steady_timer resync_timer_;
    std::chrono::milliseconds back_off_{200};
    std::chrono::steady_clock::time_point last_contact_{};
    bool stopped_ = true;
    status status_;
};

}  // namespace patroxy::health
