#pragma once
// A blocking PostgreSQL-speaking test client over plain sockets. Every read
// has a receive timeout, so a test that waits for bytes fails instead of
// hanging.

#include "support/wire.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace patroxy::testing {

/// What the server (or patroxy) said after a startup.
struct startup_outcome {
    bool ready = false;          ///< ReadyForQuery arrived
    std::string server_name;     ///< the stand-in's ParameterStatus server_name
    std::string sqlstate;        ///< ErrorResponse 'C'
    std::string message;         ///< ErrorResponse 'M'
    std::string severity;        ///< ErrorResponse 'S'
    bool closed = false;         ///< the connection ended without either
    std::uint32_t key_pid = 0;   ///< BackendKeyData
    std::vector<std::uint8_t> key_secret;
};

class raw_client {
public:
    explicit raw_client(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        timeval tv{};
        tv.tv_sec = static_cast<long>(timeout.count() / 1000);
        tv.tv_usec = static_cast<long>((timeout.count() % 1000) * 1000);
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            ::close(fd_);
            throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
        }
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;

    bool send(const packet& p) { return ::send(fd_, p.data(), p.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(p.size()); }

    /// One byte, or nullopt on EOF, error or timeout.
    std::optional<std::uint8_t> read_byte() {
        std::uint8_t b = 0;
        return ::recv(fd_, &b, 1, 0) == 1 ? std::optional<std::uint8_t>(b) : std::nullopt;
    }

    bool read_exact(std::uint8_t* out, std::size_t n) {
        std::size_t got = 0;
        while (got < n) {
            const auto r = ::recv(fd_, out + got, n - got, 0);
            if (r <= 0) {
                return false;
            }
            got += static_cast<std::size_t>(r);
        }
        return true;
    }

    /// Reads server messages until ReadyForQuery, an ErrorResponse, or the end.
    startup_outcome read_until_ready() {
        startup_outcome out;
        for (int i = 0; i < 64; ++i) {
            std::uint8_t header[5];
            if (!read_exact(header, 5)) {
                out.closed = true;
                return out;
            }
            const std::uint32_t len = (std::uint32_t{header[1]} << 24) | (std::uint32_t{header[2]} << 16) |
                                      (std::uint32_t{header[3]} << 8) | header[4];
            if (len < 4 || len > 65536) {
                out.closed = true;
                return out;
            }
            std::string body(len - 4, '\0');
            if (!read_exact(reinterpret_cast<std::uint8_t*>(body.data()), body.size())) {
                out.closed = true;
                return out;
            }
            if (header[0] == 'K' && body.size() >= 8) {
                const auto* b = reinterpret_cast<const std::uint8_t*>(body.data());
                out.key_pid = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
                out.key_secret.assign(b + 4, b + body.size());
            } else if (header[0] == 'S' && body.rfind("server_name", 0) == 0) {
                out.server_name = body.substr(12, body.find('\0', 12) - 12);
            } else if (header[0] == 'E') {
                for (std::size_t at = 0; at < body.size() && body[at] != '\0';) {
                    const char field = body[at];
                    const auto end = body.find('\0', at + 1);
                    const auto value = body.substr(at + 1, end - at - 1);
                    if (field == 'C') {
                        out.sqlstate = value;
                    } else if (field == 'M') {
                        out.message = value;
                    } else if (field == 'S') {
                        out.severity = value;
                    }
                    at = end + 1;
                }
                return out;
            } else if (header[0] == 'Z') {
                out.ready = true;
                return out;
            }
        }
        return out;
    }

    startup_outcome startup(const std::string& user = "tester") {
        send(make_startup({{"user", user}, {"database", "db"}}));
        return read_until_ready();
    }

    /// True when the peer closes (EOF or reset) before the receive timeout.
    bool closed_by_peer() {
        std::uint8_t b = 0;
        const auto r = ::recv(fd_, &b, 1, 0);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }

private:
    int fd_ = -1;
};

}  // namespace patroxy::testing
