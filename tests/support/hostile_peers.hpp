#pragma once
// Peers that misbehave on purpose, for the hostile suite: a Patroni API that
// answers with an endless or huge body or drips it, and a PostgreSQL that
// answers an SSLRequest late or with bytes behind its answer. Each runs on a
// thread of its own on 127.0.0.1:0 and stops with its destructor.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace patroxy::testing {

/// A Patroni REST API that never gives a usable answer.
class hostile_api {
public:
    enum class kind {
        huge_body,       ///< Content-Length 100 MB, and the bytes keep coming
        endless_chunks,  ///< chunked, a 1 KiB chunk after another, never the last
        drip,            ///< a small body, one byte a second
    };

    explicit hostile_api(kind k) : kind_(k) {
        acceptor_.open(tcp::v4());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~hostile_api() {
        ioc_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
    /// Bytes written to patroxy so far, every connection.
    std::uint64_t bytes_sent() const { return sent_.load(); }

private:
    using tcp = boost::asio::ip::tcp;
    struct connection : std::enable_shared_from_this<connection> {
        connection(hostile_api& owner, tcp::socket s) : owner(owner), socket(std::move(s)), timer(socket.get_executor()) {}
        hostile_api& owner;
        tcp::socket socket;
        boost::asio::steady_timer timer;
        boost::asio::streambuf request;
        std::string out;
        int dripped = 0;

        void start() {
            boost::asio::async_read_until(socket, request, "\r\n\r\n",
                                          [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                                              if (!ec) {
                                                  self->answer();
                                              }
                                          });
        }
        void answer() {
            switch (owner.kind_) {
            case kind::huge_body:
                out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n";
                out += std::string(64 * 1024 - out.size(), ' ');
                return keep_writing([](connection& c) { c.out.assign(64 * 1024, ' '); });
            case kind::endless_chunks:
                out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                return keep_writing([](connection& c) { c.out = "400\r\n" + std::string(1024, ' ') + "\r\n"; });
            case kind::drip:
                out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
                return drip();
            }
        }
        template <class Refill>
        void keep_writing(Refill refill) {
            boost::asio::async_write(socket, boost::asio::buffer(out),
                                     [self = shared_from_this(), refill](boost::system::error_code ec, std::size_t n) {
                                         self->owner.sent_ += n;
                                         if (!ec) {
                                             refill(*self);
                                             self->keep_writing(refill);
                                         }
                                     });
        }
        void drip() {
            boost::asio::async_write(socket, boost::asio::buffer(out),
                                     [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                                         self->owner.sent_ += n;
                                         if (ec || ++self->dripped > 1000) {
                                             return;
                                         }
                                         self->out = " ";
                                         self->timer.expires_after(std::chrono::seconds(1));
                                         self->timer.async_wait([self](boost::system::error_code tec) {
                                             if (!tec) {
                                                 self->drip();
                                             }
                                         });
                                     });
        }
    };

    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            std::make_shared<connection>(*this, std::move(s))->start();
            accept();
        });
    }

    kind kind_;
    boost::asio::io_context ioc_;
    tcp::acceptor acceptor_{ioc_};
    std::atomic<std::uint64_t> sent_{0};
    std::thread thread_;
};

/// A PostgreSQL that reads a client's first packet (an 8-byte SSLRequest),
/// waits `delay`, sends `answer`, and then records whatever else reaches it.
class scripted_postgres {
public:
    scripted_postgres(std::chrono::milliseconds delay, std::vector<std::uint8_t> answer)
        : delay_(delay), answer_(std::move(answer)) {
        acceptor_.open(tcp::v4());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~scripted_postgres() {
        ioc_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    /// Bytes received after each connection's first 8, all connections together.
    std::vector<std::uint8_t> received_after_first() const {
        std::lock_guard lock(mutex_);
        return after_;
    }
    int connections() const { return connections_.load(); }

private:
    using tcp = boost::asio::ip::tcp;
    struct connection : std::enable_shared_from_this<connection> {
        connection(scripted_postgres& owner, tcp::socket s) : owner(owner), socket(std::move(s)), timer(socket.get_executor()) {}
        scripted_postgres& owner;
        tcp::socket socket;
        boost::asio::steady_timer timer;
        std::array<std::uint8_t, 8> first{};
        std::array<std::uint8_t, 512> buf{};

        void start() {
            boost::asio::async_read(socket, boost::asio::buffer(first),
                                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                                        if (ec) {
                                            return;
                                        }
                                        self->listen();
                                        self->timer.expires_after(self->owner.delay_);
                                        self->timer.async_wait([self](boost::system::error_code tec) {
                                            if (!tec) {
                                                boost::asio::async_write(self->socket, boost::asio::buffer(self->owner.answer_),
                                                                         [self](boost::system::error_code, std::size_t) {});
                                            }
                                        });
                                    });
        }
        void listen() {
            socket.async_read_some(boost::asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                if (ec) {
                    return;
                }
                {
                    std::lock_guard lock(self->owner.mutex_);
                    self->owner.after_.insert(self->owner.after_.end(), self->buf.begin(),
                                              self->buf.begin() + static_cast<std::ptrdiff_t>(n));
                }
                self->listen();
            });
        }
    };

    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            ++connections_;
            std::make_shared<connection>(*this, std::move(s))->start();
            accept();
        });
    }

    std::chrono::milliseconds delay_;
    std::vector<std::uint8_t> answer_;
    boost::asio::io_context ioc_;
    tcp::acceptor acceptor_{ioc_};
    mutable std::mutex mutex_;
    std::vector<std::uint8_t> after_;
    std::atomic<int> connections_{0};
    std::thread thread_;
};

}  // namespace patroxy::testing
