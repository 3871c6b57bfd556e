#include "health/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>

namespace patroxy::health {

namespace {
constexpr std::size_t header_limit = 16 * 1024;
// A name is looked up again this often (a member moved, DNS changed).
constexpr std::chrono::seconds reresolve_every{30};

std::string describe(const beast::error_code& ec) {
    return ec == beast::error::timeout ? std::string("timed out") : ec.message();
}
}  // namespace

std::string basic_auth_header(const conf::basic_auth& auth) {
    namespace b64 = beast::detail::base64;
    const auto plain = auth.username + ":" + auth.password;
    std::string out(b64::encoded_size(plain.size()), '\0');
    out.resize(b64::encode(out.data(), plain.data(), plain.size()));
    return "Basic " + out;
}

std::shared_ptr<net::ssl::context> make_tls_context(const std::optional<conf::tls_client_config>& tls) {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    ctx->set_options(net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                     net::ssl::context::no_tlsv1_1);
    beast::error_code ec;
    const bool verify = !tls || tls->verify;
    ctx->set_verify_mode(verify ? net::ssl::verify_peer : net::ssl::verify_none, ec);
    if (tls && !tls->ca_file.empty()) {
        ctx->load_verify_file(tls->ca_file, ec);
        if (ec) {
            throw std::runtime_error("CA file " + tls->ca_file + ": " + ec.message());
        }
    } else {
        ctx->set_default_verify_paths(ec);
    }
    if (tls && !tls->cert_file.empty()) {
        ctx->use_certificate_chain_file(tls->cert_file, ec);
        if (ec) {
            throw std::runtime_error("certificate " + tls->cert_file + ": " + ec.message());
        }
        ctx->use_private_key_file(tls->key_file, net::ssl::context::pem, ec);
        if (ec) {
            throw std::runtime_error("key " + tls->key_file + ": " + ec.message());
        }
    }
    return ctx;
}

struct http_client::state {
    http::request<http::string_body> req;
    std::chrono::milliseconds timeout{0};
    std::chrono::milliseconds silence{0};
    bool streaming = false;
    on_response done;
    on_piece piece;
    std::optional<http::response_parser<http::string_body>> parser;
    std::optional<http::response_parser<http::buffer_body>> pieces;
    std::array<char, 16 * 1024> chunk{};
    bool reused = false;     ///< on a kept-alive connection: a failure to send or read retries once afresh
    bool cancelled = false;
};

http_client::http_client(net::io_context& ioc, target t, std::size_t body_limit)
    : ioc_(ioc), target_(std::move(t)), body_limit_(body_limit), resolver_(ioc) {}

http_client::~http_client() = default;

template <class F>
void http_client::with_stream(F&& f) {
    if (secure_) {
        f(*secure_);
    } else if (plain_) {
        f(*plain_);
    }
}

void http_client::request(http::request<http::string_body> req, std::chrono::milliseconds timeout, on_response done) {
    auto st = std::make_shared<state>();
    st->req = std::move(req);
    st->timeout = timeout;
    st->done = std::move(done);
    begin(std::move(st));
}

void http_client::stream(http::request<http::string_body> req, std::chrono::milliseconds connect_timeout,
                         std::chrono::milliseconds silence, on_piece piece, on_response done) {
    auto st = std::make_shared<state>();
    st->req = std::move(req);
    st->timeout = connect_timeout;
    st->silence = silence;
    st->streaming = true;
    st->piece = std::move(piece);
    st->done = std::move(done);
    begin(std::move(st));
}

void http_client::close() {
    if (current_) {
        current_->cancelled = true;
        current_.reset();
    }
    busy_ = false;
    resolver_.cancel();
    drop_connection();
}

void http_client::drop_connection() {
    connected_ = false;
    beast::error_code ignored;
    if (secure_) {
        beast::get_lowest_layer(*secure_).socket().close(ignored);
    }
    if (plain_) {
        plain_->socket().close(ignored);
    }
}

void http_client::begin(std::shared_ptr<state> st) {
    if (current_) {
        current_->cancelled = true;
    }
    current_ = st;
    busy_ = true;
    st->req.prepare_payload();
    if (connected_ && !st->streaming) {
        st->reused = true;
        with_stream([&](auto& s) { beast::get_lowest_layer(s).expires_after(st->timeout); });
        return send(std::move(st));
    }
    drop_connection();
    const auto now = std::chrono::steady_clock::now();
    if (addresses_.empty() || now - resolved_at_ >= reresolve_every) {
        return resolve(std::move(st));
    }
    connect(std::move(st));
}

void http_client::resolve(std::shared_ptr<state> st) {
    resolver_.async_resolve(target_.host, std::to_string(target_.port),
                            [self = shared_from_this(), st](beast::error_code ec, net::ip::tcp::resolver::results_type r) {
                                if (st->cancelled) {
                                    return;
                                }
                                if (ec) {
                                    return self->finish(st, "resolve " + self->target_.host + ": " + ec.message(),
                                                        {failure::step::resolve});
                                }
                                self->addresses_.assign(r.begin(), r.end());
                                self->resolved_at_ = std::chrono::steady_clock::now();
                                self->connect(st);
                            });
}

void http_client::connect(std::shared_ptr<state> st) {
    if (target_.tls) {
        plain_.reset();
        secure_.emplace(ioc_, *target_.tls);
        // SNI, and the certificate must name the host (RFC 6125).
        SSL_set_tlsext_host_name(secure_->native_handle(), target_.host.c_str());
        if (target_.verify_name) {
            secure_->set_verify_callback(net::ssl::host_name_verification(target_.host));
        }
    } else {
        secure_.reset();
        plain_.emplace(ioc_);
    }
    with_stream([&](auto& s) {
        auto& tcp = beast::get_lowest_layer(s);
        tcp.expires_after(st->timeout);  // one deadline for the exchange (a stream's: for its start)
        tcp.async_connect(addresses_, [self = shared_from_this(), st](beast::error_code ec, const net::ip::tcp::endpoint&) {
            if (st->cancelled) {
                return;
            }
            if (ec) {
                self->addresses_.clear();  // looked up again next time
                return self->fail(st, failure::step::connect, ec);
            }
            beast::error_code ignored;
            self->with_stream([&](auto& s2) { beast::get_lowest_layer(s2).socket().set_option(net::ip::tcp::no_delay(true), ignored); });
            self->handshake(st);
        });
    });
}

void http_client::handshake(std::shared_ptr<state> st) {
    if (!secure_) {
        connected_ = true;
        return send(std::move(st));
    }
    secure_->async_handshake(net::ssl::stream_base::client, [self = shared_from_this(), st](beast::error_code ec) {
        if (st->cancelled) {
            return;
        }
        if (ec) {
            return self->fail(st, failure::step::tls, ec);
        }
        self->connected_ = true;
        self->send(st);
    });
}

void http_client::send(std::shared_ptr<state> st) {
    with_stream([&](auto& s) {
        http::async_write(s, st->req, [self = shared_from_this(), st](beast::error_code ec, std::size_t) {
            if (st->cancelled) {
                return;
            }
            if (ec) {
                return self->fail(st, failure::step::request, ec);
            }
            self->read_header(st);
        });
    });
}

void http_client::read_header(std::shared_ptr<state> st) {
    buffer_.clear();
    const auto after = [self = shared_from_this(), st](beast::error_code ec, std::size_t) {
        if (st->cancelled) {
            return;
        }
        if (ec) {
            return self->fail(st, failure::step::answer, ec);
        }
        // Beast 1.74 does not always hold a Content-Length to body_limit (a
        // header and body in one read got a 100 MB body read whole): checked
        // here, before any body is read.
        const auto length = st->streaming ? st->pieces->content_length() : st->parser->content_length();
        if (length && *length > self->body_limit_) {
            return self->finish(st, "answer: body limit exceeded", {failure::step::answer});
        }
        if (st->streaming) {
            return self->read_piece(st);
        }
        self->read_body(st);
    };
    with_stream([&](auto& s) {
        if (st->streaming) {
            st->pieces.emplace();
            st->pieces->header_limit(header_limit);
            st->pieces->body_limit(boost::none);  // a watch never ends by itself; pieces are bounded instead
            http::async_read_header(s, buffer_, *st->pieces, after);
        } else {
            st->parser.emplace();
            st->parser->header_limit(header_limit);
            st->parser->body_limit(body_limit_);
            http::async_read_header(s, buffer_, *st->parser, after);
        }
    });
}

void http_client::read_body(std::shared_ptr<state> st) {
    with_stream([&](auto& s) {
        http::async_read(s, buffer_, *st->parser, [self = shared_from_this(), st](beast::error_code ec, std::size_t) {
            if (st->cancelled) {
                return;
            }
            if (ec) {
                return self->fail(st, failure::step::answer, ec);
            }
            self->finish(st, {});
        });
    });
}

void http_client::read_piece(std::shared_ptr<state> st) {
    auto& body = st->pieces->get().body();
    body.data = st->chunk.data();
    body.size = st->chunk.size();
    with_stream([&](auto& s) {
        beast::get_lowest_layer(s).expires_after(st->silence);  // each piece must come within the silence
        // read_some: back with whatever arrived (async_read would wait for
        // the 16 KiB buffer to fill, and a watch sends a line at a time).
        http::async_read_some(s, buffer_, *st->pieces, [self = shared_from_this(), st](beast::error_code ec, std::size_t) {
            if (st->cancelled) {
                return;
            }
            if (ec && ec != http::error::need_buffer) {
                return self->fail(st, failure::step::stream, ec);
            }
            const auto got = st->chunk.size() - st->pieces->get().body().size;
            if (got > 0 && !st->piece(std::string_view(st->chunk.data(), got))) {
                return self->finish(st, {});  // the reader has what it wanted
            }
            if (st->cancelled) {
                return;
            }
            if (st->pieces->is_done()) {
                return self->finish(st, {});
            }
            self->read_piece(st);
        });
    });
}

void http_client::fail(std::shared_ptr<state> st, failure::step at, const beast::error_code& ec) {
    static constexpr std::array<const char*, 7> names{"", "resolve", "connect", "TLS", "request", "answer", "stream"};
    finish(std::move(st), std::string(names[static_cast<std::size_t>(at)]) + ": " + describe(ec),
           {at, ec == beast::error::timeout, ec == net::error::connection_refused});
}

void http_client::finish(std::shared_ptr<state> st, std::string error, failure why) {
    if (st->cancelled || st != current_) {
        return;
    }
    // A kept-alive connection the server closed while idle is not the
    // server's fault: once more on a fresh one, within the same deadline.
    if (!error.empty() && st->reused && !why.timed_out) {
        st->reused = false;
        drop_connection();
        return connect(std::move(st));
    }
    response answer;
    if (error.empty()) {
        if (st->streaming) {
            answer.base() = st->pieces->get().base();
            drop_connection();  // a finished stream is not reused
        } else {
            answer = st->parser->release();
            if (!answer.keep_alive()) {
                drop_connection();
            }
        }
    } else {
        drop_connection();
    }
    with_stream([&](auto& s) {
        if (connected_) {
            beast::get_lowest_layer(s).expires_never();
        }
    });
    current_.reset();
    busy_ = false;
    last_reused_ = st->reused;
    last_failure_ = why;
    auto done = std::move(st->done);
    done(error, std::move(answer));
}

}  // namespace patroxy::health
