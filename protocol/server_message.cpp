#include "protocol/server_message.hpp"

namespace patroxy::protocol {
namespace {

decoded<server_message> bad(std::string_view why) { return {status::bad, 0, {}, why}; }

// Reads a '\0'-terminated string at `at`; false when unterminated.
bool read_cstring(bytes body, std::size_t& at, std::string& out) {
    const auto start = at;
    while (at < body.size() && body[at] != 0) {
        ++at;
    }
    if (at >= body.size()) {
        return false;
    }
    out.assign(reinterpret_cast<const char*>(body.data()) + start, at - start);
    ++at;
    return true;
}

}  // namespace

decoded<server_message> decode_server_message(bytes in) {
    if (in.size() < 5) {
        return {};
    }
    const auto len = read_u32(in, 1);
    if (len < 4) {
        return bad("server message length below 4");
    }
    if (len > max_startup_message_length) {
        return bad("server message longer than 1 MiB during startup");
    }
    const std::size_t total = std::size_t{len} + 1;
    if (in.size() < total) {
        return {};
    }
    const auto body = in.subspan(5, len - 4);
    server_message m;
    m.type = static_cast<char>(in[0]);
    switch (m.type) {
    case 'R':
        if (body.size() < 4) {
            return bad("Authentication without a code");
        }
        m.kind = server_kind::authentication;
        m.auth_code = read_u32(body, 0);
        break;
    case 'K':
        if (body.size() < 8 || body.size() > 4 + max_cancel_key_length) {
            return bad("BackendKeyData length out of range");
        }
        m.kind = server_kind::backend_key_data;
        m.key.pid = read_u32(body, 0);
        m.key.secret.assign(body.begin() + 4, body.end());
        break;
    case 'S': {
        std::size_t at = 0;
        if (!read_cstring(body, at, m.name) || !read_cstring(body, at, m.value) || at != body.size()) {
            return bad("ParameterStatus is not two strings");
        }
        m.kind = server_kind::parameter_status;
        break;
    }
    case 'Z':
        if (body.size() != 1) {
            return bad("ReadyForQuery length is not 5");
        }
        m.kind = server_kind::ready_for_query;
        m.transaction_status = static_cast<char>(body[0]);
        break;
    case 'E': {
        std::size_t at = 0;
        for (;;) {
            if (at >= body.size()) {
                return bad("ErrorResponse is not terminated");
            }
            const char field = static_cast<char>(body[at++]);
            if (field == 0) {
                break;
            }
            std::string text;
            if (!read_cstring(body, at, text)) {
                return bad("ErrorResponse field is not terminated");
            }
            if (field == 'S') {
                m.severity = std::move(text);
            } else if (field == 'C') {
                m.sqlstate = std::move(text);
            } else if (field == 'M') {
                m.message = std::move(text);
            }
        }
        m.kind = server_kind::error_response;
        break;
    }
    default:
        m.kind = server_kind::other;
        break;
    }
    return {status::complete, total, std::move(m), {}};
}

}  // namespace patroxy::protocol
