#include "protocol/transaction.hpp"

#include <algorithm>

namespace patroxy::protocol {

template <class OnMessage, class OnStatus>
void transaction_state::walk(framer& f, const std::uint8_t* data, std::size_t n, OnMessage on_message,
                             OnStatus on_status) {
    while (n > 0 && !lost_) {
        if (f.want_status) {
            on_status(data[0]);
            f.want_status = false;
        }
        if (f.left > 0) {
            const auto skip = static_cast<std::uint32_t>(std::min<std::size_t>(f.left, n));
            f.left -= skip;
            data += skip;
            n -= skip;
            continue;
        }
        const std::uint8_t full = f.untyped ? 4 : 5;
        const auto take = static_cast<std::uint8_t>(std::min<std::size_t>(full - f.have, n));
        std::copy(data, data + take, f.header + f.have);
        f.have = static_cast<std::uint8_t>(f.have + take);
        data += take;
        n -= take;
        if (f.have < full) {
            return;
        }
        const std::uint8_t* len = f.header + (f.untyped ? 0 : 1);
        const std::uint32_t length = (std::uint32_t{len[0]} << 24) | (std::uint32_t{len[1]} << 16) |
                                     (std::uint32_t{len[2]} << 8) | std::uint32_t{len[3]};
        if (length < 4) {
            lost_ = true;
            return;
        }
        const char type = f.untyped ? '\0' : static_cast<char>(f.header[0]);
        f.untyped = false;
        f.have = 0;
        f.left = length - 4;
        on_message(type);
        if (type == 'Z' && f.left > 0) {
            f.want_status = true;  // taken before the byte is skipped
        }
    }
}

void transaction_state::from_client(const std::uint8_t* data, std::size_t n) {
    walk(client_, data, n, [this](char type) {
        switch (type) {
        case 'S':  // Sync
            extended_ = false;
            if (!client_copy_) {
                ++outstanding_;
                ++syncs_since_command_;
            }
            break;
        case 'Q':  // Query
        case 'F':  // FunctionCall
            ++outstanding_;
            syncs_since_command_ = 0;
            break;
        case 'E':  // Execute: what may start a COPY FROM STDIN
            extended_ = true;
            syncs_since_command_ = 0;
            break;
        case 'P': case 'B': case 'D': case 'C': case 'H':  // Parse, Bind, Describe, Close, Flush
            extended_ = true;
            break;
        case 'd':  // CopyData
        case 'c':  // CopyDone
        case 'f':  // CopyFail
            // The server was in copy-in since the last Query/Execute: the
            // Syncs sent in between were ignored, and so are those up to the
            // CopyDone/CopyFail.
            outstanding_ -= std::min(outstanding_, syncs_since_command_);
            syncs_since_command_ = 0;
            client_copy_ = type == 'd';
            break;
        default:   // Terminate, PasswordMessage, the StartupMessage
            break;
        }
    }, [](std::uint8_t) {});
}

void transaction_state::from_server(const std::uint8_t* data, std::size_t n) {
    walk(server_, data, n, [this](char type) {
        if (type == 'G' || type == 'H' || type == 'W') {  // CopyIn, CopyOut, CopyBoth response
            copy_ = true;
        }
    }, [this](std::uint8_t status) {
        // ReadyForQuery: one per Sync, Query or FunctionCall (and one after the startup).
        status_ = status;
        copy_ = false;
        ++ready_;
        if (outstanding_ == 0) {
            lost_ = true;  // an answer nobody asked for: the count cannot be trusted now
            return;
        }
        --outstanding_;
    });
}

bool transaction_state::idle() const {
    return !lost_ && status_ == 'I' && outstanding_ == 0 && !extended_ && !copy_ && client_.at_boundary() &&
           server_.at_boundary();
}

}  // namespace patroxy::protocol
