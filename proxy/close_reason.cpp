#include "proxy/close_reason.hpp"

namespace patroxy::proxy {

std::string_view to_string(close_reason r) {
    switch (r) {
    case close_reason::done: return "done";
    case close_reason::client_abort: return "client_abort";
    case close_reason::server_abort: return "server_abort";
    case close_reason::client_timeout: return "client_timeout";
    case close_reason::server_timeout: return "server_timeout";
    case close_reason::startup_timeout: return "startup_timeout";
    case close_reason::protocol_error: return "protocol_error";
    case close_reason::backend_down: return "backend_down";
    case close_reason::no_backend: return "no_backend";
    case close_reason::connect_failed: return "connect_failed";
    case close_reason::maxconn: return "maxconn";
    case close_reason::cancel_forwarded: return "cancel_forwarded";
    case close_reason::shutdown: return "shutdown";
    case close_reason::drained: return "drained";
    }
    return "unknown";
}

}  // namespace patroxy::proxy
