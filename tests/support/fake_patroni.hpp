#pragma once
// A stand-in for one member's Patroni REST API on 127.0.0.1:0, on a thread of
// its own. It answers GET /patroni with whatever the test sets, or hangs
// (accepts and never answers), or speaks garbage.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace patroxy::testing {

class fake_patroni {
public:
    enum class mode { answer, hang, garbage };

    explicit fake_patroni(std::string body = {}) : body_(std::move(body)) {
        acceptor_.open(boost::asio::ip::tcp::v4());
        acceptor_.set_option(boost::asio::ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        do_accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~fake_patroni() {
        ioc_.stop();
        thread_.join();
    }
    fake_patroni(const fake_patroni&) = delete;
    fake_patroni& operator=(const fake_patroni&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

    void set_body(std::string body) {
        std::lock_guard lock(mutex_);
        body_ = std::move(body);
    }
    void set_mode(mode m) {
        std::lock_guard lock(mutex_);
        mode_ = m;
    }
    /// When each GET arrived.
    std::vector<std::chrono::steady_clock::time_point> requests() const {
        std::lock_guard lock(mutex_);
        return requests_;
    }

    /// A Patroni 3.x answer for a role ("master", "replica", ...).
    static std::string answer(const std::string& role, const std::string& extra = "") {
        return R"({"state": "running", "role": ")" + role + R"(", "timeline": 3, "xlog": {"location": 1000})" +
               extra + "}";
    }

private:
    using tcp = boost::asio::ip::tcp;
    struct connection : std::enable_shared_from_this<connection> {
        connection(fake_patroni& owner, tcp::socket s) : owner(owner), socket(std::move(s)) {}
        fake_patroni& owner;
        tcp::socket socket;
        boost::beast::flat_buffer buffer;
        boost::beast::http::request<boost::beast::http::string_body> request;
        boost::beast::http::response<boost::beast::http::string_body> response;
        std::string raw;

        void read() {
            request = {};
            boost::beast::http::async_read(socket, buffer, request,
                                           [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                               if (!ec) {
                                                   self->on_request();
                                               }
                                           });
        }
        void on_request() {
            mode m;
            std::string body;
            {
                std::lock_guard lock(owner.mutex_);
                owner.requests_.push_back(std::chrono::steady_clock::now());
                m = owner.mode_;
                body = owner.body_;
            }
            if (m == mode::hang) {
                read();  // keep the connection, never answer
                return;
            }
            if (m == mode::garbage) {
                raw = "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n<html>oops</html>";
                boost::asio::async_write(socket, boost::asio::buffer(raw),
                                         [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                             if (!ec) {
                                                 self->read();
                                             }
                                         });
                return;
            }
            response = {boost::beast::http::status::ok, 11};
            response.set(boost::beast::http::field::content_type, "application/json");
            response.keep_alive(request.keep_alive());
            response.body() = body;
            response.prepare_payload();
            boost::beast::http::async_write(socket, response,
                                            [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                                if (!ec) {
                                                    self->read();
                                                }
                                            });
        }
    };

    void do_accept() {
        acceptor_.async_accept([this](boost::beast::error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            std::make_shared<connection>(*this, std::move(s))->read();
            do_accept();
        });
    }

    boost::asio::io_context ioc_;
    tcp::acceptor acceptor_{ioc_};
    mutable std::mutex mutex_;
    std::string body_;
    mode mode_ = mode::answer;
    std::vector<std::chrono::steady_clock::time_point> requests_;
    std::thread thread_;
};

}  // namespace patroxy::testing
