// The stand-in member for proxy-only capacity runs (bench workloads 5 and 6):
// the stand-in PostgreSQL (startup answered at once, then echo) on --port and,
// on --api-port, a Patroni-shaped API that says "running leader" to every
// request (patroxy's GET /patroni, HAProxy's OPTIONS /primary). PostgreSQL is
// out of the way, so what remains is the proxy's own cost.

#include "bench/standin_backend.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/program_options.hpp>

#include <iostream>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace po = boost::program_options;
using tcp = net::ip::tcp;

namespace {

class api_connection : public std::enable_shared_from_this<api_connection> {
public:
    explicit api_connection(tcp::socket s) : stream_(std::move(s)) {}
    void start() { read(); }

private:
    void read() {
        request_ = {};
        http::async_read(stream_, buffer_, request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec) {
                self->answer();
            }
        });
    }
    void answer() {
        response_ = {http::status::ok, request_.version()};
        response_.set(http::field::content_type, "application/json");
        response_.body() = R"({"state":"running","role":"master","timeline":1,"xlog":{"location":0}})";
        response_.keep_alive(request_.keep_alive());
        response_.prepare_payload();
        http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec && self->response_.keep_alive()) {
                self->read();
            }
        });
    }
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
};

void accept_api(tcp::acceptor& a) {
    a.async_accept([&a](beast::error_code ec, tcp::socket s) {
        if (!ec) {
            std::make_shared<api_connection>(std::move(s))->start();
        }
        if (a.is_open()) {
            accept_api(a);
        }
    });
}

}  // namespace

int main(int argc, char** argv) {
    std::uint16_t port = 16432;
    std::uint16_t api_port = 16433;
    po::options_description opts("patroxy_standin: a stand-in PostgreSQL member for proxy-only benchmarks");
    opts.add_options()("help", "this text")("port", po::value(&port), "PostgreSQL stand-in port")(
        "api-port", po::value(&api_port), "Patroni-shaped API port");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
    } catch (const std::exception& e) {
        std::cerr << "patroxy_standin: " << e.what() << "\n" << opts;
        return 2;
    }
    if (vm.count("help")) {
        std::cout << opts;
        return 0;
    }
    net::io_context ioc;
    patroxy::bench::standin_backend pg(ioc, "standin", "127.0.0.1", port);
    tcp::acceptor api(ioc, {net::ip::make_address("127.0.0.1"), api_port});
    accept_api(api);
    net::signal_set stop(ioc, SIGTERM, SIGINT);
    stop.async_wait([&](beast::error_code, int) { ioc.stop(); });
    std::cerr << "stand-in PostgreSQL on 127.0.0.1:" << pg.port() << ", API on :" << api_port << "\n";
    ioc.run();
    return 0;
}
