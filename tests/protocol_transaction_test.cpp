#include "protocol/transaction.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using patroxy::protocol::transaction_state;

namespace {

using bytes = std::vector<std::uint8_t>;

// Byte1 type | Int32 length | body
bytes msg(char type, const std::string& body = "") {
    bytes out{static_cast<std::uint8_t>(type)};
    const auto len = static_cast<std::uint32_t>(body.size() + 4);
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(len >> shift));
    }
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

bytes cat(std::initializer_list<bytes> parts) {
    bytes out;
    for (const auto& p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

// The server's answer to a startup: AuthenticationOk, a ParameterStatus, BackendKeyData, ReadyForQuery 'I'.
const bytes startup_answer = cat({msg('R', std::string(4, '\0')), msg('S', std::string("a\0b\0", 4)),
                                  msg('K', std::string(8, '\x01')), msg('Z', "I")});

// Feeds `data` cut at `cut` (two pieces), from the server or the client.
void feed(transaction_state& t, bool server, const bytes& data, std::size_t cut) {
    cut = std::min(cut, data.size());
    const auto send = [&](const std::uint8_t* p, std::size_t n) {
        server ? t.from_server(p, n) : t.from_client(p, n);
    };
    send(data.data(), cut);
    send(data.data() + cut, data.size() - cut);
}

}  // namespace

TEST_CASE("idle after the startup's ReadyForQuery, at every split point", "[protocol]") {
    const auto cut = GENERATE(range<std::size_t>(0, 40));
    transaction_state t;
    CHECK(!t.idle());
    feed(t, true, startup_answer, cut);
    CHECK(t.idle());
    CHECK(t.ready_count() == 1);
}

TEST_CASE("a simple query: busy until its ReadyForQuery, in a block until the block ends", "[protocol]") {
    const auto cut = GENERATE(range<std::size_t>(0, 30));
    transaction_state t;
    feed(t, true, startup_answer, 0);
    feed(t, false, msg('Q', std::string("BEGIN\0", 6)), cut);
    CHECK(!t.idle());
    feed(t, true, cat({msg('C', std::string("BEGIN\0", 6)), msg('Z', "T")}), cut);
    CHECK(!t.idle());  // 'T': in a transaction block
    feed(t, false, msg('Q', std::string("COMMIT\0", 7)), cut);
    feed(t, true, cat({msg('C', std::string("COMMIT\0", 7)), msg('Z', "I")}), cut);
    CHECK(t.idle());
}

TEST_CASE("a message cut inside its body or header is not a boundary", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const auto q = msg('Q', std::string("SELECT 1\0", 9));
    t.from_client(q.data(), 3);  // half a header
    CHECK(!t.idle());
    t.from_client(q.data() + 3, q.size() - 3);
    t.from_server(startup_answer.data(), 0);
    const auto answer = cat({msg('T', std::string(6, '\0')), msg('D', std::string(6, '\0')), msg('C', "x"), msg('Z', "I")});
    t.from_server(answer.data(), answer.size() - 1);  // all but the status byte
    CHECK(!t.idle());
    t.from_server(answer.data() + answer.size() - 1, 1);
    CHECK(t.idle());
}

TEST_CASE("extended protocol: not idle between Parse and Sync, nor before Sync's ReadyForQuery", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const auto pbe = cat({msg('P', std::string("\0SELECT 1\0\0\0", 12)), msg('B', std::string(8, '\0')),
                          msg('E', std::string(5, '\0'))});
    t.from_client(pbe.data(), pbe.size());
    const auto answered = cat({msg('1'), msg('2'), msg('D', std::string(6, '\0')), msg('C', "x")});
    t.from_server(answered.data(), answered.size());
    CHECK(!t.idle());  // no Sync yet: an implicit transaction is open
    const auto sync = msg('S');
    t.from_client(sync.data(), sync.size());
    CHECK(!t.idle());
    const auto rfq = msg('Z', "I");
    t.from_server(rfq.data(), rfq.size());
    CHECK(t.idle());
}

TEST_CASE("pipelined syncs need as many ReadyForQuery messages", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const auto two = cat({msg('P', "x"), msg('S'), msg('P', "y"), msg('S')});
    t.from_client(two.data(), two.size());
    const auto rfq = msg('Z', "I");
    t.from_server(rfq.data(), rfq.size());
    CHECK(!t.idle());
    t.from_server(rfq.data(), rfq.size());
    CHECK(t.idle());
}

TEST_CASE("COPY is never idle until its ReadyForQuery", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const auto q = msg('Q', "COPY t FROM STDIN");
    t.from_client(q.data(), q.size());
    const auto copy_in = msg('G', std::string(3, '\0'));
    t.from_server(copy_in.data(), copy_in.size());
    const auto data = cat({msg('d', "1\n"), msg('c')});
    t.from_client(data.data(), data.size());
    CHECK(!t.idle());
    const auto done = cat({msg('C', "COPY 1"), msg('Z', "I")});
    t.from_server(done.data(), done.size());
    CHECK(t.idle());
}

TEST_CASE("after 'N' to an SSLRequest the client's StartupMessage is untyped", "[protocol]") {
    const auto cut = GENERATE(range<std::size_t>(0, 12));
    transaction_state t;
    t.expect_startup_from_client();
    // Int32 length | Int32 version | user\0postgres\0\0
    bytes startup{0, 0, 0, 23, 0, 3, 0, 0};
    const std::string params("user\0postgres\0\0", 15);
    startup.insert(startup.end(), params.begin(), params.end());
    feed(t, false, startup, cut);
    feed(t, true, startup_answer, cut);
    CHECK(t.idle());
    const auto q = msg('Q', "SELECT 1");
    t.from_client(q.data(), q.size());
    CHECK(!t.idle());
}

TEST_CASE("a length below 4 loses the stream for good, a replication session is never idle", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const bytes bad{'Q', 0, 0, 0, 2};
    t.from_client(bad.data(), bad.size());
    CHECK(t.lost());
    feed(t, true, startup_answer, 0);
    CHECK(!t.idle());
    transaction_state r;
    r.never_idle();
    feed(r, true, startup_answer, 0);
    CHECK(!r.idle());
}

TEST_CASE("a Query pipelined before the startup's ReadyForQuery is outstanding after it", "[protocol]") {
    const auto cut = GENERATE(range<std::size_t>(0, 40));
    transaction_state t;
    // The client does not wait for the startup's answer before its first Query.
    const auto q = msg('Q', std::string("SELECT pg_sleep(10)\0", 20));
    t.from_client(q.data(), q.size());
    feed(t, true, startup_answer, cut);
    CHECK(t.ready_count() == 1);
    CHECK(!t.idle());  // the startup's ReadyForQuery is not the Query's
    const auto answer = cat({msg('C', "x"), msg('Z', "I")});
    feed(t, true, answer, cut);
    CHECK(t.idle());
}

TEST_CASE("a ReadyForQuery nobody asked for makes the streams lost, never idle", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    CHECK(t.idle());
    const auto rfq = msg('Z', "I");
    t.from_server(rfq.data(), rfq.size());
    CHECK(t.lost());
    CHECK(!t.idle());
}

TEST_CASE("extended-protocol COPY FROM STDIN: the Syncs the server ignores in copy-in are not counted", "[protocol]") {
    const auto cut = GENERATE(range<std::size_t>(0, 40));
    transaction_state t;
    feed(t, true, startup_answer, 0);
    // libpq's PQexecParams("COPY t FROM STDIN"): one write, Sync included,
    // before the CopyInResponse arrives.
    const auto pbdes = cat({msg('P', std::string("\0COPY t FROM STDIN\0\0\0", 22)), msg('B', std::string(8, '\0')),
                            msg('D', std::string("P\0", 2)), msg('E', std::string(5, '\0')), msg('S')});
    feed(t, false, pbdes, cut);
    const auto copy_in = msg('G', std::string(3, '\0'));
    feed(t, true, copy_in, cut);
    CHECK(!t.idle());
    // PQputCopyData, PQputCopyEnd: CopyData, CopyDone and (extended mode) a Sync.
    const auto data = cat({msg('d', "1\n"), msg('S'), msg('d', "2\n"), msg('c'), msg('S')});
    feed(t, false, data, cut);
    CHECK(!t.idle());
    // One CommandComplete and one ReadyForQuery for it all.
    const auto done = cat({msg('C', std::string("COPY 2\0", 7)), msg('Z', "I")});
    feed(t, true, done, cut);
    CHECK(!t.lost());
    CHECK(t.idle());
    // And the count goes on right afterwards.
    const auto q = msg('Q', std::string("SELECT 1\0", 9));
    t.from_client(q.data(), q.size());
    CHECK(!t.idle());
    const auto answer = cat({msg('C', "x"), msg('Z', "I")});
    t.from_server(answer.data(), answer.size());
    CHECK(t.idle());
}

TEST_CASE("a COPY refused at its start: the Sync after it is answered", "[protocol]") {
    transaction_state t;
    feed(t, true, startup_answer, 0);
    const auto pbes = cat({msg('P', "x"), msg('B', "y"), msg('E', "z"), msg('S')});
    t.from_client(pbes.data(), pbes.size());
    // No CopyInResponse: an ErrorResponse, then the Sync's ReadyForQuery.
    const auto refused = cat({msg('E', std::string("SERROR\0\0", 8)), msg('Z', "I")});
    t.from_server(refused.data(), refused.size());
    CHECK(t.idle());
}
