#pragma once
// Where a plaintext session stands between transactions, read off the bytes
// that pass through, without copying or changing them (a drain closes a
// session only where it is idle: PgBouncer's `server_fast_close` and
// `outstanding_requests` are the model).
//
// Both directions are framed as protocol messages:
//   Byte1 type | Int32 length (incl. itself, >= 4) | body
// except the client's StartupMessage after an SSLRequest answered 'N'
// (Int32 length | body, untyped). Only headers are looked at, and the first
// body byte of ReadyForQuery (its transaction status).
//
// Idle means: the last ReadyForQuery said 'I' (not in a transaction block),
// every Sync, Query and FunctionCall the client sent has its ReadyForQuery,
// no extended-protocol message (Parse, Bind, Describe, Execute, Close, Flush)
// since the last Sync, no COPY running, and both streams at a message
// boundary. Pure: no I/O, unit-tested at every split point.
//
// Counting what the server answers (src/backend/tcop/postgres.c and
// commands/copyfromparse.c):
// - the startup gets one ReadyForQuery: the count starts at 1, so a Query
//   pipelined before it is still outstanding after it;
// - a Sync the server reads while in COPY FROM STDIN is ignored (CopyGetData:
//   "Ignore Flush/Sync for the convenience of client libraries"): libpq's
//   PQexecParams("COPY ... FROM STDIN") sends Parse/Bind/Describe/Execute/Sync,
//   the server is in copy-in from that Execute on, so that Sync and any other
//   before the client's CopyDone/CopyFail get no ReadyForQuery. The client's
//   own stream tells which they are (they come after the last Query/Execute
//   and before a CopyData/CopyDone/CopyFail), whenever the 'G' arrives;
// - a ReadyForQuery that nothing asked for means the count is wrong: the
//   streams are taken as lost (never idle; a drain cuts at its deadline)
//   rather than judged idle mid-query.

#include <cstddef>
#include <cstdint>

namespace patroxy::protocol {

class transaction_state {
public:
    /// The client's next packet is a StartupMessage (after 'N' to an SSLRequest).
    void expect_startup_from_client() { client_.untyped = true; }
    void from_client(const std::uint8_t* data, std::size_t n);
    void from_server(const std::uint8_t* data, std::size_t n);
    /// Idle between transactions, as above.
    bool idle() const;
    /// The streams stopped making sense (a length below 4): never idle again.
    bool lost() const { return lost_; }
    /// Sessions that are never idle (a replication connection).
    void never_idle() { lost_ = true; }
    /// ReadyForQuery messages seen (0 until the startup's own).
    std::uint64_t ready_count() const { return ready_; }

private:
    struct framer {
        std::uint8_t header[5] = {};
        std::uint8_t have = 0;      ///< header bytes gathered
        std::uint32_t left = 0;     ///< body bytes still to pass
        bool untyped = false;       ///< the next message has no type byte
        bool want_status = false;   ///< the next body byte is ReadyForQuery's status
        bool at_boundary() const { return have == 0 && left == 0 && !want_status; }
    };
    template <class OnMessage, class OnStatus>
    void walk(framer& f, const std::uint8_t* data, std::size_t n, OnMessage on_message, OnStatus on_status);

    framer client_;
    framer server_;
    std::uint32_t outstanding_ = 1;  ///< Sync, Query, FunctionCall (and the startup) without their ReadyForQuery
    std::uint32_t syncs_since_command_ = 0;  ///< counted Syncs since the last Query/Execute (a COPY may ignore them)
    bool client_copy_ = false;       ///< the client sent CopyData since the last Query/Execute, no CopyDone/Fail yet
    bool extended_ = false;          ///< an extended-protocol message since the last Sync
    bool copy_ = false;              ///< CopyIn/Out/Both until the next ReadyForQuery
    std::uint8_t status_ = 0;        ///< the last ReadyForQuery's: 'I', 'T', 'E'
    std::uint64_t ready_ = 0;
    bool lost_ = false;
};

}  // namespace patroxy::protocol
