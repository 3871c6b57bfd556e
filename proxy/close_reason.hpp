#pragma once
// Why a session ended. The log line and the metrics label both come from this
// enum (HAProxy's termination states, pgbouncer's disconnect reasons).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace patroxy::proxy {

enum class close_reason : std::uint8_t {
    done,             ///< both sides closed normally
    client_abort,     ///< the client reset or errored
    server_abort,     ///< the member reset or errored
    client_timeout,   ///< client idle past timeouts.client_idle
    server_timeout,   ///< member idle past timeouts.server_idle
    startup_timeout,  ///< no complete first packet within timeouts.startup
    protocol_error,   ///< malformed first packet, or bytes after SSLRequest
    backend_down,     ///< the member lost the role this listener routes by
    no_backend,       ///< no eligible member within wait_for_backend
    connect_failed,   ///< every connect attempt failed
    maxconn,          ///< listener full
    cancel_forwarded, ///< a CancelRequest, passed on
    shutdown,         ///< patroxy is stopping, or a drain's deadline passed
    drained,          ///< closed by a drain where it was idle between transactions (FATAL 57P01)
};

inline constexpr std::size_t close_reason_count = 14;

std::string_view to_string(close_reason r);

}  // namespace patroxy::proxy
