#pragma once
// A stand-in PostgreSQL server for what PostgreSQL would hide: the proxy's own
// connect cost and relay throughput (bench/), and routing checks in component
// tests. It answers a startup with AuthenticationOk, ParameterStatus
// server_name=<its name>, BackendKeyData and ReadyForQuery, then echoes every
// byte until a lone Terminate message, which closes the session. SSLRequest/GSSENCRequest get 'N'; CancelRequests are recorded.

#include "protocol/first_packet.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace patroxy::bench {

class standin_backend {
public:
    /// Listens on `address`:`port` (0: any free port) and serves on `ioc`.
    standin_backend(boost::asio::io_context& ioc, std::string name, const std::string& address = "127.0.0.1",
                    std::uint16_t port = 0);
    std::uint16_t port() const { return port_; }
    const std::string& name() const { return name_; }
    std::uint64_t connections() const { return connections_.load(); }
    std::vector<protocol::cancel_key> cancels() const;
    /// The key it hands out in BackendKeyData for its n-th connection (1-based).
    static protocol::cancel_key key_for(std::uint32_t n);
    /// Stops accepting (existing sessions go on).
    void stop_accepting();

    struct connection;

private:
    void do_accept();

    boost::asio::ip::tcp::acceptor acceptor_;
    std::string name_;
    std::uint16_t port_ = 0;
    std::atomic<std::uint64_t> connections_{0};
    mutable std::mutex mutex_;
    std::vector<protocol::cancel_key> cancels_;
};

/// A stand-in on a thread of its own, for tests.
class standin_thread {
public:
    explicit standin_thread(std::string name) : backend_(ioc_, std::move(name)), thread_([this] { ioc_.run(); }) {}
    ~standin_thread() {
        ioc_.stop();
        thread_.join();
    }
    standin_backend& operator*() { return backend_; }
    standin_backend* operator->() { return &backend_; }

private:
    boost::asio::io_context ioc_;
    standin_backend backend_;
    std::thread thread_;
};

}  // namespace patroxy::bench
