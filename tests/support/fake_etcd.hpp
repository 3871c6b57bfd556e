#pragma once
// A stand-in for one etcd member's HTTP API on 127.0.0.1:0, on a thread of its
// own, for component tests of the DCS watcher: unary answers the test sets
// per target (or a hang), and watch streams (chunked, one JSON message per
// line) the test writes into as it likes.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace patroxy::testing {

class fake_etcd {
public:
    struct seen {
        std::string method;
        std::string target;
        std::string body;
        std::string authorization;
    };
    /// An answer: HTTP status, body and headers; nullopt hangs (never answers).
    struct answer {
        int status = 200;
        std::string body;
        std::map<std::string, std::string> headers;
    };
    using handler = std::function<std::optional<answer>(const seen&)>;
    /// For a streaming target: the lines to send as soon as the stream opens.
    using stream_opener = std::function<std::vector<std::string>(const seen&)>;

    fake_etcd() {
        acceptor_.open(boost::asio::ip::tcp::v4());
        acceptor_.set_option(boost::asio::ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        do_accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~fake_etcd() {
        ioc_.stop();
        thread_.join();
    }
    fake_etcd(const fake_etcd&) = delete;
    fake_etcd& operator=(const fake_etcd&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    /// Answers requests to `target` (path without the query) with `h`.
    void on(const std::string& target, handler h) {
        std::lock_guard lock(mutex_);
        handlers_[target] = std::move(h);
    }
    /// Requests to `target` open a chunked stream, first with `open`'s lines.
    void stream(const std::string& target, stream_opener open) {
        std::lock_guard lock(mutex_);
        streams_[target] = std::move(open);
    }
    /// One message to every open stream (a newline is added).
    void push(const std::string& line) {
        boost::asio::post(ioc_, [this, line] {
            for (auto& c : open_streams_) {
                c->send_chunk(line + "\n");
            }
        });
    }
    /// Ends every open stream (the terminating chunk), as a member going away would.
    void end_streams() {
        boost::asio::post(ioc_, [this] {
            for (auto& c : open_streams_) {
                c->send_raw("0\r\n\r\n");
            }
            open_streams_.clear();
        });
    }
    std::vector<seen> requests() const {
        std::lock_guard lock(mutex_);
        return requests_;
    }
    std::size_t count(const std::string& target) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& r : requests_) {
            n += r.target.substr(0, r.target.find('?')) == target ? 1 : 0;
        }
        return n;
    }

private:
    using tcp = boost::asio::ip::tcp;
    struct connection : std::enable_shared_from_this<connection> {
        connection(fake_etcd& owner, tcp::socket s) : owner(owner), socket(std::move(s)) {}
        fake_etcd& owner;
        tcp::socket socket;
        boost::beast::flat_buffer buffer;
        boost::beast::http::request<boost::beast::http::string_body> request;
        boost::beast::http::response<boost::beast::http::string_body> response;
        std::vector<std::shared_ptr<std::string>> queue;   // writes in order, one at a time
        bool writing = false;

        void read() {
            request = {};
            boost::beast::http::async_read(socket, buffer, request,
                                           [self = shared_from_this()](boost::beast::error_code ec, std::size_t) {
                                               if (!ec) {
                                                   self->on_request();
                                               }
                                           });
        }
        void send_raw(std::string bytes) {
            queue.push_back(std::make_shared<std::string>(std::move(bytes)));
            pump();
        }
        void send_chunk(const std::string& data) {
            char size[32];
            std::snprintf(size, sizeof size, "%zx\r\n", data.size());
            send_raw(size + data + "\r\n");
        }
        void pump() {
            if (writing || queue.empty()) {
                return;
            }
            writing = true;
            auto next = queue.front();
            queue.erase(queue.begin());
            boost::asio::async_write(socket, boost::asio::buffer(*next),
                                     [self = shared_from_this(), next](boost::beast::error_code ec, std::size_t) {
                                         self->writing = false;
                                         if (!ec) {
                                             self->pump();
                                         }
                                     });
        }
        void on_request() {
            seen s{std::string(request.method_string()), std::string(request.target()), request.body(),
                   std::string(request[boost::beast::http::field::authorization])};
            const auto path = s.target.substr(0, s.target.find('?'));
            handler h;
            stream_opener open;
            {
                std::lock_guard lock(owner.mutex_);
                owner.requests_.push_back(s);
                if (auto it = owner.streams_.find(path); it != owner.streams_.end()) {
                    open = it->second;
                } else if (auto it2 = owner.handlers_.find(path); it2 != owner.handlers_.end()) {
                    h = it2->second;
                }
            }
            if (open) {
                send_raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
                for (const auto& line : open(s)) {
                    send_chunk(line + "\n");
                }
                owner.open_streams_.push_back(shared_from_this());
                return;
            }
            std::optional<answer> a = h ? h(s) : std::optional<answer>(answer{404, R"({"error":"no handler"})", {}});
            if (!a) {
                read();  // keep the connection, never answer
                return;
            }
            response = {static_cast<boost::beast::http::status>(a->status), 11};
            response.set(boost::beast::http::field::content_type, "application/json");
            for (const auto& [k, v] : a->headers) {
                response.set(k, v);
            }
            response.keep_alive(request.keep_alive());
            response.body() = a->body;
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
    std::map<std::string, handler> handlers_;
    std::map<std::string, stream_opener> streams_;
    std::vector<seen> requests_;
    std::vector<std::shared_ptr<connection>> open_streams_;   // on the fake's thread only
    std::thread thread_;
};

}  // namespace patroxy::testing
