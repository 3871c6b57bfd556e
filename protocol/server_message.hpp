#pragma once
// The server messages patroxy reads on a plaintext session until the session
// is ready (ReadyForQuery), without I/O.
//
// Every message: Byte1 type | Int32 len (incl. self, not the type) | body
//   'R' Authentication:   Int32 code (0 ok, 3 cleartext, 5 md5, 10 SASL, ...) | data
//   'K' BackendKeyData:   Int32 pid | Byte[len-8] key (4 bytes in 3.0, up to 256 in 3.2)
//   'S' ParameterStatus:  String name | String value
//   'Z' ReadyForQuery:    Byte1 status ('I', 'T', 'E')
//   'E' ErrorResponse:    (Byte1 field String value)* | '\0'

#include "protocol/first_packet.hpp"

#include <string>

namespace patroxy::protocol {

/// Startup-phase messages are small; a larger length is not believed.
inline constexpr std::uint32_t max_startup_message_length = 1 << 20;

enum class server_kind { authentication, backend_key_data, parameter_status, ready_for_query, error_response, other };

struct server_message {
    char type = 0;
    server_kind kind = server_kind::other;
    std::uint32_t auth_code = 0;     ///< authentication
    cancel_key key;                  ///< backend_key_data
    std::string name;                ///< parameter_status
    std::string value;               ///< parameter_status
    char transaction_status = 0;     ///< ready_for_query
    std::string severity;            ///< error_response 'S'
    std::string sqlstate;            ///< error_response 'C'
    std::string message;             ///< error_response 'M'
};

/// Decodes the first message in `in`; `consumed` is its full size (type byte included).
decoded<server_message> decode_server_message(bytes in);

}  // namespace patroxy::protocol
