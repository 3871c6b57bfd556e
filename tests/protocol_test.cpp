#include "protocol/first_packet.hpp"

#include "protocol/error_response.hpp"
#include "support/wire.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace patroxy::protocol;
using namespace patroxy::testing;

namespace {
bytes head(const packet& p, std::size_t n) { return bytes(p.data(), n); }
}  // namespace

TEST_CASE("a StartupMessage decodes at every split point", "[protocol]") {
    const auto wire = make_startup({{"user", "app"}, {"database", "db"}, {"application_name", "pgbench"},
                                    {"options", "-c search_path=x"}});
    for (std::size_t cut = 0; cut < wire.size(); ++cut) {
        INFO("cut at " << cut);
        CHECK(decode_first_packet(head(wire, cut)).st == status::need_more);
    }
    const auto d = decode_first_packet(wire);
    REQUIRE(d.st == status::complete);
    CHECK(d.consumed == wire.size());
    CHECK(d.value.kind == first_kind::startup);
    CHECK(d.value.startup.user == "app");
    CHECK(d.value.startup.database == "db");
    CHECK(d.value.startup.application_name == "pgbench");
    CHECK(d.value.startup.options == "-c search_path=x");
    CHECK(d.value.startup.major == 3);
}

TEST_CASE("protocol 3.2 and unknown minor versions pass but other majors do not", "[protocol]") {
    const auto v32 = decode_first_packet(make_startup({{"user", "u"}}, (3u << 16) | 2));
    REQUIRE(v32.st == status::complete);
    CHECK(v32.value.startup.minor == 2);
    CHECK(decode_first_packet(make_startup({{"user", "u"}}, (3u << 16) | 99)).st == status::complete);
    const auto v2 = decode_first_packet(make_startup({{"user", "u"}}, 2u << 16));
    CHECK(v2.st == status::bad);
    CHECK(v2.why == "unsupported protocol version (only 3.x)");
}

TEST_CASE("SSLRequest and GSSENCRequest", "[protocol]") {
    const auto ssl = make_code_packet(ssl_request_code);
    for (std::size_t cut = 0; cut < ssl.size(); ++cut) {
        CHECK(decode_first_packet(head(ssl, cut)).st == status::need_more);
    }
    const auto d = decode_first_packet(ssl);
    REQUIRE(d.st == status::complete);
    CHECK(d.value.kind == first_kind::ssl_request);
    CHECK(d.consumed == 8);
    CHECK(decode_first_packet(make_code_packet(gssenc_request_code)).value.kind == first_kind::gssenc_request);
    auto long_ssl = make_code_packet(ssl_request_code);
    long_ssl.insert(long_ssl.end(), 4, 0);
    patch_length(long_ssl, 0);
    CHECK(decode_first_packet(long_ssl).st == status::bad);
}

TEST_CASE("CancelRequest with a 4-byte and a long key", "[protocol]") {
    const auto c30 = make_cancel(4242, {1, 2, 3, 4});
    for (std::size_t cut = 0; cut < c30.size(); ++cut) {
        CHECK(decode_first_packet(head(c30, cut)).st == status::need_more);
    }
    const auto d = decode_first_packet(c30);
    REQUIRE(d.st == status::complete);
    CHECK(d.value.kind == first_kind::cancel_request);
    CHECK(d.value.cancel.pid == 4242);
    CHECK(d.value.cancel.secret == std::vector<std::uint8_t>{1, 2, 3, 4});
    const auto c32 = make_cancel(7, std::vector<std::uint8_t>(32, 9));
    CHECK(decode_first_packet(c32).value.cancel.secret.size() == 32);
    CHECK(decode_first_packet(make_cancel(7, std::vector<std::uint8_t>(257, 9))).st == status::bad);
    CHECK(decode_first_packet(make_cancel(7, {1, 2, 3})).st == status::bad);
}

TEST_CASE("a direct TLS ClientHello is recognised", "[protocol]") {
    const packet hello{0x16, 0x03, 0x01, 0x02, 0x00};
    CHECK(decode_first_packet(head(hello, 1)).st == status::need_more);
    const auto d = decode_first_packet(hello);
    REQUIRE(d.st == status::complete);
    CHECK(d.value.kind == first_kind::tls_client_hello);
    CHECK(d.consumed == 0);
}

TEST_CASE("malformed first packets are bad, with a reason, as soon as they can be judged", "[protocol]") {
    auto length_only = [](std::uint32_t len) {
        packet p;
        put_u32(p, len);
        return p;
    };
    CHECK(decode_first_packet(length_only(0)).why == "first packet length below 8");
    CHECK(decode_first_packet(length_only(4)).why == "first packet length below 8");
    CHECK(decode_first_packet(length_only(7)).why == "first packet length below 8");
    CHECK(decode_first_packet(length_only(10001)).why == "first packet longer than 10000 bytes");
    CHECK(decode_first_packet(length_only(0x80000000u)).why == "first packet longer than 10000 bytes");
    auto unterminated = make_startup({{"user", "u"}});
    unterminated.pop_back();
    unterminated.pop_back();
    patch_length(unterminated, 0);
    CHECK(decode_first_packet(unterminated).why == "startup parameters are not terminated");
    auto trailing = make_startup({{"user", "u"}});
    trailing.push_back('x');
    patch_length(trailing, 0);
    CHECK(decode_first_packet(trailing).st == status::bad);
    CHECK(decode_first_packet(packet{0x16, 0x09, 0x09}).st == status::bad);
}

TEST_CASE("random bytes never crash the decoder", "[protocol]") {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> size(0, 300);
    for (int i = 0; i < 20000; ++i) {
        packet p(size(rng));
        for (auto& b : p) {
            b = static_cast<std::uint8_t>(byte(rng));
        }
        if (p.size() >= 4 && i % 2 == 0) {  // plausible lengths reach the deeper paths
            p[0] = 0;
            p[1] = 0;
        }
        const auto d = decode_first_packet(p);
        CHECK(d.consumed <= p.size());
    }
}

TEST_CASE("ErrorResponse layout", "[protocol]") {
    std::vector<std::uint8_t> out;
    encode_error_response(out, severity::fatal, sqlstate::cannot_connect_now, "no leader");
    const std::string expected_body = std::string("SFATAL\0VFATAL\0C57P03\0Mno leader\0\0", 33);
    REQUIRE(out.size() == 1 + 4 + expected_body.size());
    CHECK(out[0] == 'E');
    CHECK(read_u32(out, 1) == 4 + expected_body.size());
    CHECK(std::string(out.begin() + 5, out.end()) == expected_body);
    std::vector<std::uint8_t> with_nul;
    encode_error_response(with_nul, severity::error, "08006", std::string("a\0b", 3), "detail", "hint");
    const std::string text(with_nul.begin(), with_nul.end());
    CHECK(text.find("Ma?b") != std::string::npos);
    CHECK(text.find("Ddetail") != std::string::npos);
    CHECK(text.find("Hhint") != std::string::npos);
    CHECK(text.find("SERROR") != std::string::npos);
}
