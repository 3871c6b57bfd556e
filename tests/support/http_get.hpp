#pragma once
// A blocking HTTP GET for tests (Beast), bounded by socket timeouts.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>

#include <string>

namespace patroxy::testing {

struct http_answer {
    int status = 0;   ///< 0: no answer
    std::string body;
};

inline http_answer http_get(int port, const std::string& target) {
    namespace beast = boost::beast;
    namespace http = beast::http;
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket socket(ioc);
    beast::error_code ec;
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
    if (ec) {
        return {};
    }
    timeval tv{5, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(false);
    http::write(socket, req, ec);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res, ec);
    if (ec && ec != http::error::end_of_stream) {
        return {};
    }
    return {static_cast<int>(res.result_int()), res.body()};
}

}  // namespace patroxy::testing
