// The stand-in member for proxy-only capacity runs (bench workloads 5 and 6):
// the stand-in PostgreSQL (startup answered at once, then echo) on --port and,
// on --api-port, a Patroni-shaped API that says "running leader" to every
// request (patroxy's GET /patroni, HAProxy's OPTIONS /primary). PostgreSQL is
// out of the way, so what remains is the proxy's own cost.
//
// With --members N (bench/routing.sh) it stands in for N members in one
// process: member i on --port + i and --api-port + i. The one at --leader
// (0 unless told; -1: none) says "running leader", the others "running
// replica", streaming (Patroni 3.0.4+'s replication_state) and replayed up to
// the leader's position, so every one is in a read listener's class.

#include "bench/standin_backend.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/program_options.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace po = boost::program_options;
using tcp = net::ip::tcp;

namespace {

class api_connection : public std::enable_shared_from_this<api_connection> {
public:
    api_connection(tcp::socket s, const std::string& body) : stream_(std::move(s)), body_(body) {}
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
        response_.body() = body_;
        response_.keep_alive(request_.keep_alive());
        response_.prepare_payload();
        http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec && self->response_.keep_alive()) {
                self->read();
            }
        });
    }
    beast::tcp_stream stream_;
    const std::string& body_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
};

const std::string leader_body = R"({"state":"running","role":"master","timeline":1,"xlog":{"location":0}})";
const std::string replica_body =
    R"({"state":"running","role":"replica","timeline":1,"replication_state":"streaming",)"
    R"("xlog":{"received_location":0,"replayed_location":0,"replayed_timestamp":null,"paused":false}})";

void accept_api(tcp::acceptor& a, const std::string& body) {
    a.async_accept([&a, &body](beast::error_code ec, tcp::socket s) {
        if (!ec) {
            std::make_shared<api_connection>(std::move(s), body)->start();
        }
        if (a.is_open()) {
            accept_api(a, body);
        }
    });
}

}  // namespace

int main(int argc, char** argv) {
    std::uint16_t port = 16432;
    std::uint16_t api_port = 16433;
    int members = 1;
    int leader = 0;
    po::options_description opts("patroxy_standin: a stand-in PostgreSQL member for proxy-only benchmarks");
    opts.add_options()("help", "this text")("port", po::value(&port), "PostgreSQL stand-in port")(
        "api-port", po::value(&api_port), "Patroni-shaped API port")(
        "members", po::value(&members), "members to stand in for, on consecutive ports from --port and --api-port")(
        "leader", po::value(&leader), "which member (0-based) says leader; the others say replica; -1: none");
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
    if (members < 1 || members > 1000 || port + members - 1 > 65535 || api_port + members - 1 > 65535) {
        std::cerr << "patroxy_standin: --members must be 1..1000 and the ports must fit\n";
        return 2;
    }
    net::io_context ioc;
    std::vector<std::unique_ptr<patroxy::bench::standin_backend>> pgs;
    std::vector<std::unique_ptr<tcp::acceptor>> apis;
    for (int i = 0; i < members; ++i) {
        const auto name = members == 1 ? std::string("standin") : "standin" + std::to_string(i);
        pgs.push_back(std::make_unique<patroxy::bench::standin_backend>(ioc, name, "127.0.0.1",
                                                                        static_cast<std::uint16_t>(port + i)));
        apis.push_back(std::make_unique<tcp::acceptor>(
            ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(api_port + i)}));
        accept_api(*apis.back(), i == leader ? leader_body : replica_body);
    }
    net::signal_set stop(ioc, SIGTERM, SIGINT);
    stop.async_wait([&](beast::error_code, int) { ioc.stop(); });
    if (members == 1) {
        std::cerr << "stand-in PostgreSQL on 127.0.0.1:" << port << ", API on :" << api_port << "\n";
    } else {
        std::cerr << members << " stand-in members: PostgreSQL on 127.0.0.1:" << port << "-" << port + members - 1
                  << ", API on :" << api_port << "-" << api_port + members - 1 << ", leader " << leader << "\n";
    }
    ioc.run();
    return 0;
}
