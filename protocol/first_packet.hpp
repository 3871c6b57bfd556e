#pragma once
// The first packet a PostgreSQL client sends, classified without I/O.
//
// StartupMessage: Int32 len (incl. self) | Int32 version (major<<16 | minor) |
//                 (String key '\0' String value '\0')* | '\0'
// SSLRequest:     Int32 8 | Int32 80877103          (1234<<16 | 5679)
// GSSENCRequest:  Int32 8 | Int32 80877104          (1234<<16 | 5680)
// CancelRequest:  Int32 len | Int32 80877102 | Int32 pid | Byte[len-12] key
//                 (1234<<16 | 5678; 4-byte key in 3.0, up to 256 bytes in 3.2)
// A TLS ClientHello instead (PostgreSQL 17 sslnegotiation=direct) starts with
// the record header 0x16 0x03 0x0N, which no length prefix <= 10000 can.

#include "protocol/wire.hpp"

#include <string>
#include <vector>

namespace patroxy::protocol {

inline constexpr std::uint32_t ssl_request_code = 80877103;     // protocol-message-formats: SSLRequest
inline constexpr std::uint32_t gssenc_request_code = 80877104;  // GSSENCRequest
inline constexpr std::uint32_t cancel_request_code = 80877102;  // CancelRequest
inline constexpr std::uint32_t max_startup_length = 10000;      // MAX_STARTUP_PACKET_LENGTH, pqcomm.h
inline constexpr std::size_t max_cancel_key_length = 256;       // protocol 3.2: "at most 256 bytes"

enum class first_kind { startup, ssl_request, gssenc_request, cancel_request, tls_client_hello };

/// What a StartupMessage says about the session, for logs, stats and routing.
struct startup_info {
    std::uint16_t major = 3;
    std::uint16_t minor = 0;
    std::string user;
    std::string database;
    std::string application_name;
    std::string options;
    bool replication = false;   ///< a walsender session (never idle between transactions)
};

/// The key a CancelRequest carries (and BackendKeyData gave out).
struct cancel_key {
    std::uint32_t pid = 0;
    std::vector<std::uint8_t> secret;
    friend bool operator==(const cancel_key&, const cancel_key&) = default;
};

struct first_packet {
    first_kind kind = first_kind::startup;
    startup_info startup;   ///< kind == startup
    cancel_key cancel;      ///< kind == cancel_request
};

/// Classifies the bytes a client sent first. `consumed` is the packet's length
/// (0 for a TLS ClientHello, which is relayed as it is).
decoded<first_packet> decode_first_packet(bytes in);

std::string_view to_string(first_kind k);

}  // namespace patroxy::protocol
