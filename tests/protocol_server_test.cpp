#include "protocol/server_message.hpp"

#include "support/wire.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace patroxy::protocol;
using namespace patroxy::testing;

namespace {

packet message(char type, const packet& body) {
    packet p{static_cast<std::uint8_t>(type)};
    put_u32(p, static_cast<std::uint32_t>(body.size() + 4));
    p.insert(p.end(), body.begin(), body.end());
    return p;
}

packet text(std::initializer_list<std::string> parts) {
    packet p;
    for (const auto& s : parts) {
        p.insert(p.end(), s.begin(), s.end());
        p.push_back(0);
    }
    return p;
}

// A server's answer to a startup, as PostgreSQL sends it with trust auth.
packet startup_answer() {
    packet out;
    packet auth;
    put_u32(auth, 0);
    for (const auto& m : {message('R', auth), message('S', text({"server_version", "15.18"})),
                          message('S', text({"application_name", "psql"}))}) {
        out.insert(out.end(), m.begin(), m.end());
    }
    packet key;
    put_u32(key, 4242);
    key.insert(key.end(), {0xde, 0xad, 0xbe, 0xef});
    for (const auto& m : {message('K', key), message('Z', {'I'})}) {
        out.insert(out.end(), m.begin(), m.end());
    }
    return out;
}

}  // namespace

TEST_CASE("a startup answer decodes message by message at every split point", "[protocol]") {
    const auto wire = startup_answer();
    std::vector<server_kind> kinds;
    cancel_key key;
    std::size_t at = 0;
    while (at < wire.size()) {
        const auto rest = bytes(wire.data() + at, wire.size() - at);
        const auto d = decode_server_message(rest);
        REQUIRE(d.st == status::complete);
        for (std::size_t cut = 0; cut < d.consumed; ++cut) {
            CHECK(decode_server_message(rest.first(cut)).st == status::need_more);
        }
        kinds.push_back(d.value.kind);
        if (d.value.kind == server_kind::backend_key_data) {
            key = d.value.key;
        }
        at += d.consumed;
    }
    CHECK(kinds == std::vector<server_kind>{server_kind::authentication, server_kind::parameter_status,
                                            server_kind::parameter_status, server_kind::backend_key_data,
                                            server_kind::ready_for_query});
    CHECK(key.pid == 4242);
    CHECK(key.secret == std::vector<std::uint8_t>{0xde, 0xad, 0xbe, 0xef});
}

TEST_CASE("ParameterStatus, ReadyForQuery, ErrorResponse and a 3.2 key", "[protocol]") {
    const auto ps = decode_server_message(message('S', text({"TimeZone", "UTC"})));
    CHECK(ps.value.name == "TimeZone");
    CHECK(ps.value.value == "UTC");
    CHECK(decode_server_message(message('Z', {'T'})).value.transaction_status == 'T');
    auto fields = text({"SFATAL", "C28P01", "Mpassword authentication failed"});
    fields.push_back(0);
    const auto err = decode_server_message(message('E', fields));
    REQUIRE(err.st == status::complete);
    CHECK(err.value.severity == "FATAL");
    CHECK(err.value.sqlstate == "28P01");
    CHECK(err.value.message == "password authentication failed");
    packet long_key;
    put_u32(long_key, 7);
    long_key.insert(long_key.end(), 32, 0x5a);
    CHECK(decode_server_message(message('K', long_key)).value.key.secret.size() == 32);
    CHECK(decode_server_message(message('D', {1, 2, 3})).value.kind == server_kind::other);
}

TEST_CASE("malformed server messages are bad with a reason", "[protocol]") {
    packet tiny{'Z'};
    put_u32(tiny, 3);
    CHECK(decode_server_message(tiny).why == "server message length below 4");
    packet huge{'D'};
    put_u32(huge, 0x7fffffff);
    CHECK(decode_server_message(huge).why == "server message longer than 1 MiB during startup");
    CHECK(decode_server_message(message('Z', {'I', 'I'})).st == status::bad);
    CHECK(decode_server_message(message('S', text({"only-a-name"}))).st == status::bad);
    CHECK(decode_server_message(message('K', {1, 2, 3})).st == status::bad);
    CHECK(decode_server_message(message('E', {'S', 'x'})).st == status::bad);
    CHECK(decode_server_message(message('R', {0, 0})).st == status::bad);
}

TEST_CASE("random bytes never crash the server-message decoder", "[protocol]") {
    std::mt19937 rng(99);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> size(0, 200);
    const char types[] = {'R', 'K', 'S', 'Z', 'E', 'D'};
    for (int i = 0; i < 20000; ++i) {
        packet p(size(rng));
        for (auto& b : p) {
            b = static_cast<std::uint8_t>(byte(rng));
        }
        if (p.size() >= 5) {
            p[0] = static_cast<std::uint8_t>(types[i % 6]);
            p[1] = p[2] = 0;  // plausible lengths reach the body checks
        }
        const auto d = decode_server_message(p);
        CHECK(d.consumed <= p.size());
    }
}
