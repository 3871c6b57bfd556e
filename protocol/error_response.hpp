#pragma once
// ErrorResponse, so a refused client shows a real message with a SQLSTATE
// instead of "server closed the connection unexpectedly".
//
// 'E' | Int32 len (incl. self) | ('S' sev '\0' | 'V' sev '\0' | 'C' code '\0' |
//                                 'M' msg '\0' | ['D' detail '\0'] | ['H' hint '\0']) | '\0'

#include <cstdint>
#include <string_view>
#include <vector>

namespace patroxy::protocol {

enum class severity { error, fatal };

/// SQLSTATEs patroxy answers with (PostgreSQL errcodes.txt).
namespace sqlstate {
inline constexpr std::string_view cannot_connect_now = "57P03";
inline constexpr std::string_view admin_shutdown = "57P01";   ///< what pg_terminate_backend and a fast shutdown send
inline constexpr std::string_view too_many_connections = "53300";
inline constexpr std::string_view connection_failure = "08006";
inline constexpr std::string_view protocol_violation = "08P01";
}  // namespace sqlstate

/// Appends one ErrorResponse to `out`. NUL bytes in the texts become '?'.
void encode_error_response(std::vector<std::uint8_t>& out, severity sev, std::string_view code,
                           std::string_view message, std::string_view detail = {}, std::string_view hint = {});

/// The one-byte answer to SSLRequest/GSSENCRequest that declines encryption.
inline constexpr std::uint8_t decline_encryption = 'N';

}  // namespace patroxy::protocol
