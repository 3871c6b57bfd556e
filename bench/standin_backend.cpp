#include "bench/standin_backend.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <array>

namespace patroxy::bench {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

namespace {

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(v >> shift));
    }
}

// type | Int32 len | body
void put_message(std::vector<std::uint8_t>& out, char type, const std::vector<std::uint8_t>& body) {
    out.push_back(static_cast<std::uint8_t>(type));
    put_u32(out, static_cast<std::uint32_t>(body.size() + 4));
    out.insert(out.end(), body.begin(), body.end());
}

std::vector<std::uint8_t> greeting(const std::string& name, std::uint32_t n) {
    std::vector<std::uint8_t> out;
    std::vector<std::uint8_t> body;
    put_u32(body, 0);  // AuthenticationOk
    put_message(out, 'R', body);
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"server_name", name},
                                     {"server_version", "15.0 (patroxy stand-in)"}}) {
        body.assign(key.begin(), key.end());
        body.push_back(0);
        body.insert(body.end(), value.begin(), value.end());
        body.push_back(0);
        put_message(out, 'S', body);
    }
    const auto key = standin_backend::key_for(n);
    body.clear();
    put_u32(body, key.pid);
    body.insert(body.end(), key.secret.begin(), key.secret.end());
    put_message(out, 'K', body);
    put_message(out, 'Z', {'I'});
    return out;
}

}  // namespace

struct standin_backend::connection : std::enable_shared_from_this<connection> {
    connection(standin_backend& owner, tcp::socket s, std::uint32_t n) : owner(owner), socket(std::move(s)), n(n) {}
    standin_backend& owner;
    tcp::socket socket;
    std::uint32_t n;
    std::vector<std::uint8_t> first;
    std::vector<std::uint8_t> out;
    std::array<std::uint8_t, 16 * 1024> buf{};

    void read_first() {
        const auto have = first.size();
        first.resize(have + 512);
        socket.async_read_some(net::buffer(first.data() + have, 512), [self = shared_from_this(), have](error_code ec, std::size_t got) {
            self->first.resize(have + got);
            if (!ec) {
                self->on_first();
            }
        });
    }
    void on_first() {
        const auto d = protocol::decode_first_packet(first);
        if (d.st == protocol::status::need_more) {
            return read_first();
        }
        if (d.st == protocol::status::bad) {
            return;  // drop the connection
        }
        switch (d.value.kind) {
        case protocol::first_kind::ssl_request:
        case protocol::first_kind::gssenc_request:
            first.clear();
            out.assign(1, 'N');
            return write_then([](connection& c) { c.read_first(); });
        case protocol::first_kind::cancel_request: {
            std::lock_guard lock(owner.mutex_);
            owner.cancels_.push_back(d.value.cancel);
            return;
        }
        case protocol::first_kind::tls_client_hello:
            return;
        case protocol::first_kind::startup:
            out = greeting(owner.name_, n);
            // A client that did not wait for the answer: its next bytes are echoed too.
            out.insert(out.end(), first.begin() + static_cast<std::ptrdiff_t>(d.consumed), first.end());
            return write_then([](connection& c) { c.echo(); });
        }
    }
    template <class Next>
    void write_then(Next next) {
        net::async_write(socket, net::buffer(out), [self = shared_from_this(), next](error_code ec, std::size_t) {
            if (!ec) {
                next(*self);
            }
        });
    }
    void echo() {
        socket.async_read_some(net::buffer(buf), [self = shared_from_this()](error_code ec, std::size_t got) {
            if (ec) {
                return;
            }
            // A Terminate ('X', length 4) ends the session as PostgreSQL does;
            // echoing it would reset the client that already closed.
            if (got == 5 && self->buf[0] == 'X' && self->buf[4] == 4) {
                return;
            }
            net::async_write(self->socket, net::buffer(self->buf.data(), got), [self](error_code wec, std::size_t) {
                if (!wec) {
                    self->echo();
                }
            });
        });
    }
};

standin_backend::standin_backend(net::io_context& ioc, std::string name, const std::string& address, std::uint16_t port)
    : acceptor_(ioc), name_(std::move(name)) {
    const tcp::endpoint ep(net::ip::make_address(address), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    do_accept();
}

protocol::cancel_key standin_backend::key_for(std::uint32_t n) {
    return {10000 + n, {static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
                        static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)}};
}

std::vector<protocol::cancel_key> standin_backend::cancels() const {
    std::lock_guard lock(mutex_);
    return cancels_;
}

void standin_backend::stop_accepting() {
    net::post(acceptor_.get_executor(), [this] {
        error_code ignored;
        acceptor_.close(ignored);
    });
}

void standin_backend::do_accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket s) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
            return;
        }
        if (!ec) {
            error_code ignored;
            s.set_option(tcp::no_delay(true), ignored);
            const auto n = static_cast<std::uint32_t>(++connections_);
            std::make_shared<connection>(*this, std::move(s), n)->read_first();
        }
        do_accept();
    });
}

}  // namespace patroxy::bench
