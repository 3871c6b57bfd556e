// Patroni's REST API over HTTPS (restapi.certfile, and verify_client for a
// client certificate): patroxy's check client against a stand-in TLS server
// with the test CA in tests/data/tls/. Also host names for APIs and for
// discovered members' PostgreSQL. And how a failed check says it failed.

#include "health/patroni_client.hpp"

#include "support/fake_patroni.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <catch2/catch.hpp>

#include <thread>

using namespace patroxy;
using namespace patroxy::health;
using namespace std::chrono_literals;
namespace net = boost::asio;
namespace beast = boost::beast;

namespace {

const std::string tls_dir = PATROXY_SOURCE_DIR "/tests/data/tls/";

// One HTTPS server on 127.0.0.1:0 answering every GET with a Patroni leader's
// answer; with `require_client`, only to a client certificate the CA signed.
class tls_patroni {
public:
    explicit tls_patroni(bool require_client) : ctx_(net::ssl::context::tls_server) {
        ctx_.use_certificate_chain_file(tls_dir + "server.crt");
        ctx_.use_private_key_file(tls_dir + "server.key", net::ssl::context::pem);
        if (require_client) {
            ctx_.load_verify_file(tls_dir + "ca.crt");
            ctx_.set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
        }
        acceptor_.open(net::ip::tcp::v4());
        acceptor_.set_option(net::ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind({net::ip::make_address("127.0.0.1"), 0});
        acceptor_.listen();
        accept();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~tls_patroni() {
        ioc_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

private:
    struct conn : std::enable_shared_from_this<conn> {
        conn(net::ip::tcp::socket s, net::ssl::context& ctx) : stream(std::move(s), ctx) {}
        beast::ssl_stream<beast::tcp_stream> stream;
        beast::flat_buffer buffer;
        beast::http::request<beast::http::string_body> req;
        beast::http::response<beast::http::string_body> res;
        void start() {
            stream.async_handshake(net::ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
                if (!ec) {
                    self->read();
                }
            });
        }
        void read() {
            req = {};
            beast::http::async_read(stream, buffer, req, [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) {
                    return;
                }
                self->res = {beast::http::status::ok, 11};
                self->res.body() = R"({"state": "running", "role": "master", "timeline": 4})";
                self->res.prepare_payload();
                beast::http::async_write(self->stream, self->res, [self](beast::error_code e, std::size_t) {
                    if (!e) {
                        self->read();
                    }
                });
            });
        }
    };
    void accept() {
        acceptor_.async_accept([this](beast::error_code ec, net::ip::tcp::socket s) {
            if (ec) {
                return;
            }
            std::make_shared<conn>(std::move(s), ctx_)->start();
            accept();
        });
    }
    net::io_context ioc_;
    net::ssl::context ctx_;
    net::ip::tcp::acceptor acceptor_{ioc_};
    std::thread thread_;
};

// One check of `member`, as the monitor would make it.
check_result check(const conf::member_config& member) {
    net::io_context ioc;
    check_result out;
    bool got = false;
    auto client = std::make_shared<patroni_client>(ioc, member, 2s, [&](check_result r) {
        out = std::move(r);
        got = true;
        ioc.stop();
        return 1h;
    });
    client->start();
    ioc.run_for(5s);
    client->stop();
    REQUIRE(got);
    return out;
}

conf::member_config https_member(const std::string& host, std::uint16_t port) {
    conf::member_config m;
    m.name = "pg0";
    m.host = "127.0.0.1";
    m.api.host = host;
    m.api.port = port;
    m.api.https = true;
    m.api.url = "https://" + host + ":" + std::to_string(port);
    return m;
}

}  // namespace

TEST_CASE("an HTTPS Patroni API: the CA verifies it, by address and by name", "[health][tls]") {
    tls_patroni server(false);
    auto m = https_member("127.0.0.1", server.port());
    m.api_tls = conf::tls_client_config{tls_dir + "ca.crt", "", "", true};
    auto r = check(m);
    INFO(r.error);
    CHECK(r.answered);
    CHECK(r.report->claims_leadership());
    // By name: "localhost" resolves here, and the certificate names it.
    m.api.host = "localhost";
    r = check(m);
    INFO(r.error);
    CHECK(r.answered);
}

TEST_CASE("an HTTPS Patroni API signed by another CA, or under another name, fails its check", "[health][tls]") {
    tls_patroni server(false);
    auto m = https_member("127.0.0.1", server.port());
    m.api_tls = conf::tls_client_config{tls_dir + "other-ca.crt", "", "", true};
    auto r = check(m);
    CHECK(!r.answered);
    CHECK(r.error.rfind("TLS: ", 0) == 0);
    // verify: false takes any certificate (an operator's explicit choice).
    m.api_tls->verify = false;
    r = check(m);
    INFO(r.error);
    CHECK(r.answered);
    // Plain HTTP to a TLS port: a failed check, not a hang or a crash.
    m.api.https = false;
    r = check(m);
    CHECK(!r.answered);
}

TEST_CASE("Patroni's verify_client: the check presents the client certificate", "[health][tls]") {
    tls_patroni server(true);
    auto m = https_member("127.0.0.1", server.port());
    m.api_tls = conf::tls_client_config{tls_dir + "ca.crt", "", "", true};
    auto r = check(m);
    CHECK(!r.answered);  // no client certificate: refused
    m.api_tls->cert_file = tls_dir + "client.crt";
    m.api_tls->key_file = tls_dir + "client.key";
    r = check(m);
    INFO(r.error);
    CHECK(r.answered);
}

TEST_CASE("a TLS file that cannot be used fails every check with the file's name", "[health][tls]") {
    auto m = https_member("127.0.0.1", 1);
    m.api_tls = conf::tls_client_config{"/nonexistent/ca.crt", "", "", true};
    const auto r = check(m);
    CHECK(!r.answered);
    CHECK(r.error.find("/nonexistent/ca.crt") != std::string::npos);
}

TEST_CASE("a failed check says how it failed: refused at the connect or hung after it", "[health]") {
    // member_tracker's hangs() and the handback guard go by these, not by the error text.
    conf::member_config m;
    m.name = "pg0";
    m.host = "127.0.0.1";
    m.api.host = "127.0.0.1";
    SECTION("refused: nothing listens") {
        std::uint16_t port = 0;
        {
            net::io_context ioc;
            net::ip::tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), 0});
            port = a.local_endpoint().port();
        }  // closed: connects to it are refused
        m.api.port = port;
        m.api.url = "http://127.0.0.1:" + std::to_string(port);
        const auto r = check(m);
        INFO(r.error);
        CHECK(!r.answered);
        CHECK(r.refused);
        CHECK(!r.hung);
        CHECK(!r.connect_timed_out);
        CHECK(r.error.rfind("connect: ", 0) == 0);
    }
    SECTION("hung: it connects and never answers") {
        testing::fake_patroni api(testing::fake_patroni::answer("master"));
        api.set_mode(testing::fake_patroni::mode::hang);
        m.api.port = api.port();
        m.api.url = api.url();
        const auto r = check(m);
        INFO(r.error);
        CHECK(!r.answered);
        CHECK(r.hung);
        CHECK(!r.refused);
        CHECK(!r.connect_timed_out);
        CHECK(r.error == "answer: timed out");
    }
    SECTION("hung in the TLS handshake") {
        // Listening, never accepting: the kernel completes the connect, nothing answers the hello.
        net::io_context ioc;
        net::ip::tcp::acceptor silent(ioc, {net::ip::make_address("127.0.0.1"), 0});
        m = https_member("127.0.0.1", silent.local_endpoint().port());
        m.api_tls = conf::tls_client_config{tls_dir + "ca.crt", "", "", true};
        const auto r = check(m);
        INFO(r.error);
        CHECK(r.hung);
        CHECK(r.error == "TLS: timed out");
    }
}
