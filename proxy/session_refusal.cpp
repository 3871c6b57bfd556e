// A refused session: 'N' to an encryption request, then a FATAL ErrorResponse the client can show.
#include "proxy/session.hpp"

#include "protocol/error_response.hpp"
#include "proxy/worker.hpp"

#include <sys/socket.h>

namespace patroxy::proxy {

void session::refuse(close_reason why, std::string_view sqlstate, std::string message) {
    phase_ = phase::refusing;
    refusal_ = why;
    refusal_text_ = message;
    refusal_bytes_.clear();
    protocol::encode_error_response(refusal_bytes_, protocol::severity::fatal, sqlstate, message);
    const auto kind = packet_ ? packet_->kind : protocol::first_kind::startup;
    if (kind == protocol::first_kind::cancel_request || kind == protocol::first_kind::tls_client_hello) {
        return close(why, message);  // nobody to show a message to in plaintext
    }
    if (kind == protocol::first_kind::ssl_request || kind == protocol::first_kind::gssenc_request) {
        // Decline encryption, read the plaintext StartupMessage, then answer it
        // with the error: libpq shows that message (or falls back, per sslmode).
        arm(timeouts().startup, why);
        return decline_encryption();
    }
    send_refusal();
}

// Answers 'N' to an SSL/GSS request, then reads the client's next packet.
void session::decline_encryption() {
    first_.clear();
    ++declines_;
    refusal_step_ = refusal_step::declining;
    to_client_ = {&protocol::decline_encryption, 1, 1};
    flush_to_client();
}

void session::send_refusal() {
    arm(timeouts().startup, refusal_);
    refusal_step_ = refusal_step::answering;
    to_client_ = {refusal_bytes_.data(), refusal_bytes_.size(), refusal_bytes_.size()};
    flush_to_client();
}

void session::flush_to_client() {
    const auto sent = ::send(client_.get(), to_client_.data, to_client_.left, MSG_NOSIGNAL);
    if (sent < 0) {
        if (would_block(errno)) {
            return;  // the socket reports room
        }
        return close(refusal_, "client left during refusal");
    }
    to_client_.data += sent;
    to_client_.left -= static_cast<std::size_t>(sent);
    if (to_client_.left > 0) {
        return;
    }
    if (refusal_step_ == refusal_step::declining) {
        refusal_step_ = refusal_step::reading;
        return read_first();
    }
    // The error first, then the FIN, even if the close has to reset.
    ::shutdown(client_.get(), SHUT_WR);
    close(refusal_, refusal_text_);
}

}  // namespace patroxy::proxy
