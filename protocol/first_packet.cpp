#include "protocol/first_packet.hpp"

namespace patroxy::protocol {
namespace {

decoded<first_packet> bad(std::string_view why) { return {status::bad, 0, {}, why}; }

// Reads "key\0value\0...\0" that must end exactly at the packet's end.
bool read_parameters(bytes body, startup_info& info) {
    std::size_t at = 0;
    auto next_string = [&](std::string_view& out) {
        const auto start = at;
        while (at < body.size() && body[at] != 0) {
            ++at;
        }
        if (at == body.size()) {
            return false;  // no terminator: truncated
        }
        out = std::string_view(reinterpret_cast<const char*>(body.data()) + start, at - start);
        ++at;
        return true;
    };
    for (;;) {
        std::string_view key;
        if (!next_string(key)) {
            return false;
        }
        if (key.empty()) {
            return at == body.size();  // the list's terminator must be the last byte
        }
        std::string_view value;
        if (!next_string(value)) {
            return false;
        }
        if (key == "user") {
            info.user = value;
        } else if (key == "database") {
            info.database = value;
        } else if (key == "application_name") {
            info.application_name = value;
        } else if (key == "options") {
            info.options = value;
        } else if (key == "replication") {
            info.replication = value != "false" && value != "off" && value != "no" && value != "0";
        }
    }
}

}  // namespace

decoded<first_packet> decode_first_packet(bytes in) {
    if (in.empty()) {
        return {};
    }
    // TLS record header: ContentType handshake (22), legacy version 3.x.
    if (in[0] == 0x16) {
        if (in.size() < 3) {
            return {};
        }
        if (in[1] == 0x03 && in[2] <= 0x04) {
            first_packet p;
            p.kind = first_kind::tls_client_hello;
            return {status::complete, 0, std::move(p), {}};
        }
        return bad("first packet is neither PostgreSQL nor TLS");
    }
    if (in.size() < 8) {
        // Judge an impossible length as soon as it is readable.
        if (in.size() >= 4) {
            const auto len = read_u32(in, 0);
            if (len < 8) {
                return bad("first packet length below 8");
            }
            if (len > max_startup_length) {
                return bad("first packet longer than 10000 bytes");
            }
        }
        return {};
    }
    const auto len = read_u32(in, 0);
    const auto code = read_u32(in, 4);
    if (len < 8) {
        return bad("first packet length below 8");
    }
    if (len > max_startup_length) {
        return bad("first packet longer than 10000 bytes");
    }
    first_packet p;
    if (code == ssl_request_code || code == gssenc_request_code) {
        if (len != 8) {
            return bad("SSLRequest/GSSENCRequest length is not 8");
        }
        p.kind = code == ssl_request_code ? first_kind::ssl_request : first_kind::gssenc_request;
        return {status::complete, 8, std::move(p), {}};
    }
    if (code == cancel_request_code) {
        if (len < 16 || len > 12 + max_cancel_key_length) {
            return bad("CancelRequest length out of range");
        }
        if (in.size() < len) {
            return {};
        }
        p.kind = first_kind::cancel_request;
        p.cancel.pid = read_u32(in, 8);
        p.cancel.secret.assign(in.begin() + 12, in.begin() + len);
        return {status::complete, len, std::move(p), {}};
    }
    const auto major = static_cast<std::uint16_t>(code >> 16);
    const auto minor = static_cast<std::uint16_t>(code & 0xffff);
    if (major != 3) {
        return bad("unsupported protocol version (only 3.x)");
    }
    if (in.size() < len) {
        return {};
    }
    p.kind = first_kind::startup;
    p.startup.major = major;
    p.startup.minor = minor;
    if (!read_parameters(in.subspan(8, len - 8), p.startup)) {
        return bad("startup parameters are not terminated");
    }
    return {status::complete, len, std::move(p), {}};
}

std::string_view to_string(first_kind k) {
    switch (k) {
    case first_kind::startup: return "startup";
    case first_kind::ssl_request: return "ssl_request";
    case first_kind::gssenc_request: return "gssenc_request";
    case first_kind::cancel_request: return "cancel_request";
    case first_kind::tls_client_hello: return "tls_client_hello";
    }
    return "unknown";
}

}  // namespace patroxy::protocol
