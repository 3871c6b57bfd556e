#include "app/handover.hpp"

#include "base/log.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace patroxy::app {

namespace net = boost::asio;
using local = net::local::stream_protocol;
using error_code = boost::system::error_code;

namespace {
constexpr std::size_t fds_per_message = 250;           // SCM_MAX_FD is 253
constexpr std::uint32_t max_header = 4 * 1024 * 1024;  // a handful of names and Patroni answers
constexpr std::chrono::seconds request_timeout{5};

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool read_exact(int fd, void* out, std::size_t n) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
        const auto r = ::recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

bool write_all(int fd, const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const auto w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// One byte carrying up to fds_per_message descriptors.
ssize_t send_fds(int socket, const int* fds, std::size_t count) {
    char byte = 'F';
    iovec iov{&byte, 1};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * count));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
    return ::sendmsg(socket, &msg, MSG_NOSIGNAL);
}

bool receive_fds(int socket, std::size_t count, std::vector<proxy::unique_fd>& out) {
    char byte = 0;
    iovec iov{&byte, 1};
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds_per_message));
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t r = 0;
    do {
        r = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r != 1 || byte != 'F') {
        return false;
    }
    std::size_t got = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        const auto n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < n; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            out.emplace_back(fd);
            ++got;
        }
    }
    return got == count && (msg.msg_flags & MSG_CTRUNC) == 0;
}

// Whether a process answers at `path`: a reason not to take the path over,
// or nullopt once it is free (nothing there, or a stale file now unlinked).
std::optional<std::string> answers_at(const std::string& path) {
    proxy::unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (!s || path.size() >= sizeof addr.sun_path) {
        return std::nullopt;  // bind() says what is wrong
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        return std::string("another process listens there (a patroxy running with the same control_socket?)");
    }
    if (errno == ECONNREFUSED) {
        ::unlink(path.c_str());  // nobody listens: left by a process that is gone
    }
    return std::nullopt;  // ENOENT: free; anything else: bind() says what is wrong
}
}  // namespace

received_handover::~received_handover() {
    if (connection >= 0) {
        ::close(connection);
    }
}

bool received_handover::confirm(bool adopted, std::chrono::milliseconds wait) {
    if (connection < 0) {
        return false;
    }
    const auto protocol = header.find("handover");
    const bool acknowledged = protocol != header.end() && protocol->is_number_integer() &&
                              protocol->get<int>() >= handover_protocol;
    const std::string taken = !acknowledged ? "TAKEN\n" : adopted ? "TAKEN adopted\n" : "TAKEN not-adopted\n";
    bool ok = write_all(connection, taken.data(), taken.size());
    if (ok && acknowledged) {
        // Longer than the running process waits for TAKEN: it answers or closes first.
        const auto ms = wait.count();
        timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
        ::setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char answer[3] = {};
        ok = read_exact(connection, answer, sizeof answer) && std::memcmp(answer, "OK\n", 3) == 0;
    }
    ::close(connection);
    connection = -1;
    return ok;
}

std::optional<received_handover> request_handover(const std::string& path, std::string& why) {
    proxy::unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (!s || path.size() >= sizeof addr.sun_path) {
        why = s ? "control socket path too long" : errno_text("socket");
        return std::nullopt;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    timeval tv{10, 0};
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        why = errno_text("no patroxy answers at " + path);
        return std::nullopt;
    }
    const std::string request = "HANDOVER " PATROXY_VERSION "\n";
    std::uint8_t len[4];
    if (!write_all(s.get(), request.data(), request.size()) || !read_exact(s.get(), len, sizeof len)) {
        why = "the running patroxy at " + path + " did not answer the handover";
        return std::nullopt;
    }
    const std::uint32_t n = (std::uint32_t{len[0]} << 24) | (std::uint32_t{len[1]} << 16) |
                            (std::uint32_t{len[2]} << 8) | std::uint32_t{len[3]};
    std::string text(n <= max_header ? n : 0, '\0');
    if (n > max_header || !read_exact(s.get(), text.data(), text.size())) {
        why = "the handover header is missing or too long";
        return std::nullopt;
    }
    received_handover out;
    out.header = nlohmann::json::parse(text, nullptr, false);
    if (out.header.is_discarded() || !out.header.is_object() || !out.header["sockets"].is_array()) {
        why = "the handover header is not what this version expects";
        return std::nullopt;
    }
    const std::size_t total = out.header["sockets"].size();
    for (std::size_t at = 0; at < total; at += fds_per_message) {
        if (!receive_fds(s.get(), std::min(fds_per_message, total - at), out.fds)) {
            why = "the handover's descriptors did not all arrive";
            return std::nullopt;
        }
    }
    out.connection = s.release();
    return out;
}

// One handover with one next process: request, header and descriptors, confirmation.
class control_server::exchange : public std::enable_shared_from_this<exchange> {
public:
    exchange(control_server& owner, local::socket socket, pid_t peer)
        : owner_(owner), alive_(owner.alive_), socket_(std::move(socket)), timer_(socket_.get_executor()),
          in_(256), peer_(peer) {}

    void start() {
        timer_.expires_after(request_timeout);
        timer_.async_wait([self = shared_from_this()](error_code ec) {
            if (!ec) {
                error_code ignored;
                self->socket_.close(ignored);  // too slow to ask
            }
        });
        net::async_read_until(socket_, in_, '\n', [self = shared_from_this()](error_code ec, std::size_t n) {
            self->on_request(ec, n);
        });
    }

private:
    void finish(bool taken, bool adopted = false) {
        if (!*alive_ || finished_) {
            return;
        }
        finished_ = true;
        timer_.cancel();
        owner_.busy_ = false;
        if (prepared_) {
            owner_.handler_.done(taken, adopted);
        }
    }
    void on_request(error_code ec, std::size_t n) {
        if (ec || !*alive_) {
            return finish(false);
        }
        std::string line(static_cast<const char*>(in_.data().data()), n);
        in_.consume(n);
        if (line.rfind("HANDOVER ", 0) != 0) {
            PATROXY_LOG(warn, "upgrade") << "control socket: not a handover request; closed";
            return finish(false);
        }
        PATROXY_LOG(info, "upgrade") << "handing the listening sockets over to the next process ("
                                     << line.substr(9, line.size() - 10) << ")";
        payload_ = owner_.handler_.prepare();
        prepared_ = true;
        const auto text = payload_.header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        out_.resize(4);
        const auto len = static_cast<std::uint32_t>(text.size());
        out_[0] = static_cast<char>(len >> 24);
        out_[1] = static_cast<char>(len >> 16);
        out_[2] = static_cast<char>(len >> 8);
        out_[3] = static_cast<char>(len);
        out_ += text;
        net::async_write(socket_, net::buffer(out_), [self = shared_from_this()](error_code wec, std::size_t) {
            if (wec) {
                return self->finish(false);
            }
            self->send_batches();
        });
    }
    void send_batches() {
        while (sent_ < payload_.fds.size()) {
            const auto count = std::min(fds_per_message, payload_.fds.size() - sent_);
            std::vector<int> batch;
            for (std::size_t i = sent_; i < sent_ + count; ++i) {
                batch.push_back(payload_.fds[i].get());
            }
            const auto r = send_fds(socket_.native_handle(), batch.data(), count);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return socket_.async_wait(local::socket::wait_write, [self = shared_from_this()](error_code ec) {
                    if (ec) {
                        return self->finish(false);
                    }
                    self->send_batches();
                });
            }
            if (r != 1) {
                PATROXY_LOG(error, "upgrade") << errno_text("sending the listening sockets");
                return finish(false);
            }
            sent_ += count;
        }
        timer_.expires_after(owner_.confirm_timeout_);
        timer_.async_wait([self = shared_from_this()](error_code ec) {
            // Both handlers may be ready in the same turn: the first to run decides.
            if (!ec && !self->decided_) {
                self->decided_ = true;
                // No TAKEN in time: we resume. The next process gets no OK,
                // so it starts nothing and exits on its own (handover.hpp).
                PATROXY_LOG(error, "upgrade") << "the next process (pid " << self->peer_ << ") did not confirm within "
                                              << self->owner_.confirm_timeout_.count()
                                              << "ms: closing the handover; it exits without an OK";
                error_code ignored;
                self->socket_.close(ignored);
            }
        });
        net::async_read_until(socket_, in_, '\n', [self = shared_from_this()](error_code ec, std::size_t n) {
            const std::string answer = ec ? "" : std::string(static_cast<const char*>(self->in_.data().data()), n);
            // A plain TAKEN comes from an older next process, which adopts whatever we held.
            const bool adopted = answer == "TAKEN\n" || answer == "TAKEN adopted\n";
            if ((!adopted && answer != "TAKEN not-adopted\n") || !*self->alive_ || self->decided_) {
                return self->finish(false);
            }
            // Decided: the next process serves. The OK goes out and the
            // outcome is handed on in this same handler, so that nothing (the
            // timer, a SIGTERM) runs between the two. Three bytes on a Unix
            // socket the peer only reads from: a non-blocking send takes them.
            self->decided_ = true;
            const bool sent = ::send(self->socket_.native_handle(), "OK\n", 3, MSG_NOSIGNAL | MSG_DONTWAIT) == 3;
            // An older next process (plain TAKEN) reads no OK and may have
            // closed already: it serves whatever becomes of the send. One
            // that waits for the OK and does not get it exits: we resume.
            self->finish(sent || answer == "TAKEN\n", adopted);
        });
    }

    control_server& owner_;
    std::shared_ptr<bool> alive_;
    local::socket socket_;
    net::steady_timer timer_;
    net::streambuf in_;
    std::string out_;
    handover_payload payload_;
    pid_t peer_;
    std::size_t sent_ = 0;
    bool prepared_ = false;
    bool finished_ = false;
    bool decided_ = false;   ///< TAKEN read in time, or the confirm timeout ran: whichever came first
};

control_server::control_server(net::io_context& ioc, const std::string& path, handler h, std::optional<int> inherited,
                               std::chrono::milliseconds confirm_timeout)
    : ioc_(ioc), path_(path), handler_(std::move(h)), acceptor_(ioc), confirm_timeout_(confirm_timeout) {
    error_code ec;
    if (inherited) {
        acceptor_.assign(local(), *inherited, ec);
    } else {
        // A socket file left by a process that is gone is replaced; one that a
        // live patroxy answers on is its upgrade path, and stays its own.
        if (const auto live = answers_at(path)) {
            throw std::runtime_error("control socket " + path + ": " + *live);
        }
        acceptor_.open(local(), ec);
        if (!ec) {
            const auto old_mask = ::umask(0077);  // 0600: only this user (and root) may ask for the sockets
            acceptor_.bind(local::endpoint(path), ec);
            ::umask(old_mask);
        }
        if (!ec) {
            acceptor_.listen(4, ec);
        }
    }
    if (ec) {
        throw std::runtime_error("control socket " + path + ": " + ec.message());
    }
}

void control_server::start() { do_accept(); }

void control_server::stop(bool unlink) {
    *alive_ = false;
    error_code ignored;
    acceptor_.close(ignored);
    if (unlink) {
        ::unlink(path_.c_str());
    }
}

void control_server::do_accept() {
    acceptor_.async_accept([this, alive = alive_](error_code ec, local::socket socket) {
        if (!*alive || ec == net::error::operation_aborted || !acceptor_.is_open()) {
            return;
        }
        if (!ec) {
            ucred peer{};
            socklen_t len = sizeof peer;
            const bool ours = ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 &&
                              (peer.uid == ::geteuid() || peer.uid == 0);
            if (!ours) {
                PATROXY_LOG(warn, "upgrade") << "control socket: a process of uid " << peer.uid
                                             << " asked for the sockets; refused";
            } else if (busy_) {
                PATROXY_LOG(warn, "upgrade") << "control socket: a handover is in progress; refused another";
            } else {
                busy_ = true;
                std::make_shared<exchange>(*this, std::move(socket), peer.pid)->start();
            }
        }
        do_accept();
    });
}

}  // namespace patroxy::app
