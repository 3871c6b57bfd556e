#include "health/dcs_watcher.hpp"

#include "base/log.hpp"
#include "base/text.hpp"

#include <boost/asio/post.hpp>

#include <charconv>

namespace patroxy::health {

namespace {
constexpr std::size_t max_answer = 4 * 1024 * 1024;  // a cluster's keys: a few KiB; refuse anything absurd
constexpr std::size_t max_line = 4 * 1024 * 1024;
// A watch may stay silent for long (etcd 3.4.23 sends no progress on a quiet
// watch): the resync ranges notice a dead member, not this.
constexpr std::chrono::minutes watch_silence{5};
constexpr std::chrono::seconds v2_wait{60};
constexpr std::chrono::milliseconds max_back_off{2000};

bool auth_expired(const std::string& why) {
    return why.find("invalid auth token") != std::string::npos || why.find("user name is empty") != std::string::npos ||
           why.find("revision of auth store is old") != std::string::npos;
}
}  // namespace

dcs_watcher::dcs_watcher(net::io_context& ioc, const conf::dcs_config& cfg, on_view view)
    : ioc_(ioc),
      cfg_(cfg),
      on_view_(std::move(view)),
      prefix_(dcs_prefix(cfg.ns, cfg.scope)),
      retry_timer_(ioc),
      resync_timer_(ioc) {
    if (cfg_.https) {
        try {
            tls_ = make_tls_context(cfg_.tls);
        } catch (const std::exception& e) {
            setup_error_ = std::string("TLS: ") + e.what();
        }
    }
}

void dcs_watcher::start() {
    stopped_ = false;
    endpoint_ = 0;
    connect_next({});
}

void dcs_watcher::stop() {
    stopped_ = true;
    ++generation_;
    retry_timer_.cancel();
    resync_timer_.cancel();
    if (unary_) {
        unary_->close();
    }
    if (stream_) {
        stream_->close();
    }
}

std::shared_ptr<http_client> dcs_watcher::client_for(std::size_t endpoint) {
    http_client::target t;
    t.host = cfg_.hosts[endpoint].first;
    t.port = cfg_.hosts[endpoint].second;
    t.tls = tls_;
    t.verify_name = !cfg_.tls || cfg_.tls->verify;
    return std::make_shared<http_client>(ioc_, t, max_answer);
}

void dcs_watcher::connect_next(std::string why) {
    if (stopped_) {
        return;
    }
    ++generation_;
    if (unary_) {
        unary_->close();
    }
    if (stream_) {
        stream_->close();
    }
    if (!why.empty()) {
        endpoint_ = (endpoint_ + 1) % cfg_.hosts.size();  // the next member of the etcd cluster
    }
    const auto& [host, port] = cfg_.hosts[endpoint_];
    status_.endpoint = host + ":" + std::to_string(port);
    if (!setup_error_.empty()) {
        return fail(setup_error_);
    }
    unary_ = client_for(endpoint_);
    stream_ = client_for(endpoint_);
    line_.clear();
    if (cfg_.type == conf::dcs_config::kind::etcd3 && cfg_.auth && token_.empty()) {
        return authenticate();
    }
    range(false);
}

http::request<http::string_body> dcs_watcher::post(const std::string& target, std::string body) const {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, status_.endpoint);
    req.set(http::field::user_agent, "patroxy/" PATROXY_VERSION);
    req.set(http::field::content_type, "application/json");
    // A member cut off from its cluster refuses the stream instead of
    // hanging it silently (etcd#10819: the require-leader metadata).
    req.set("Grpc-Metadata-hasleader", "true");
    if (!token_.empty()) {
        req.set(http::field::authorization, token_);  // etcd's gateway takes the token as it is
    }
    req.keep_alive(true);
    req.body() = std::move(body);
    return req;
}

http::request<http::string_body> dcs_watcher::get(const std::string& target) const {
    http::request<http::string_body> req{http::verb::get, target, 11};
    req.set(http::field::host, status_.endpoint);
    req.set(http::field::user_agent, "patroxy/" PATROXY_VERSION);
    if (cfg_.auth) {
        req.set(http::field::authorization, basic_auth_header(*cfg_.auth));
    }
    req.keep_alive(true);
    return req;
}

void dcs_watcher::authenticate() {
    const auto gen = generation_;
    unary_->request(post("/v3/auth/authenticate", etcd3::auth_request(cfg_.auth->username, cfg_.auth->password)),
                    cfg_.timeout, [self = shared_from_this(), gen](const std::string& error, http_client::response res) {
                        if (gen != self->generation_) {
                            return;
                        }
                        if (!error.empty()) {
                            return self->fail("authenticate: " + error);
                        }
                        std::string why;
                        auto token = etcd3::parse_auth(res.body(), why);
                        if (!token) {
                            return self->fail("authenticate: " + why);
                        }
                        self->token_ = std::move(*token);
                        self->range(false);
                    });
}

void dcs_watcher::range(bool resync) {
    const auto gen = generation_;
    auto done = [self = shared_from_this(), gen, resync](const std::string& error, http_client::response res) {
        if (gen == self->generation_) {
            self->on_range(error, std::move(res), resync);
        }
    };
    if (cfg_.type == conf::dcs_config::kind::etcd3) {
        unary_->request(post("/v3/kv/range", etcd3::range_request(prefix_)), cfg_.timeout, std::move(done));
    } else {
        const auto dir = prefix_.substr(0, prefix_.size() - 1);
        // A quorum read: an etcd member cut off from the others would answer
        // from its own, frozen copy, where no key ever expires.
        unary_->request(get("/v2/keys" + dir + "?recursive=true&quorum=true"), cfg_.timeout, std::move(done));
    }
}

void dcs_watcher::on_range(const std::string& error, http_client::response res, bool resync) {
    if (!error.empty()) {
        return fail((resync ? "resync: " : "range: ") + error);
    }
    std::string why;
    std::optional<dcs_view> got;
    if (cfg_.type == conf::dcs_config::kind::etcd3) {
        got = etcd3::parse_range(res.body(), prefix_, why);
    } else {
        std::int64_t index = 0;
        const auto text = res["X-Etcd-Index"];
        std::from_chars(text.data(), text.data() + text.size(), index);  // 0 when missing: every event is newer
        got = etcd2::parse_get(res.body(), index, prefix_, why);
    }
    if (!got) {
        if (auth_expired(why)) {
            token_.clear();
            return authenticate();
        }
        return fail("range: " + why);
    }
    contact();
    if (!resync) {
        view_ = std::move(*got);
        have_view_ = true;
        on_view_(view_);
        arm_resync();
        return cfg_.type == conf::dcs_config::kind::etcd3 ? watch() : wait_v2();
    }
    // A resync: the watch may have missed an event (etcd 3.4's known bugs).
    // A range older than what the watch brought says nothing new (the member
    // it came from may lag); one as new or newer is the truth at its revision.
    auto fresh = std::move(*got);
    if (fresh.revision < view_.revision) {
        return arm_resync();
    }
    auto current = view_;
    current.revision = fresh.revision;
    if (fresh == current) {
        view_.revision = fresh.revision;  // events up to here are in the view: later ones apply on top
    } else {
        ++status_.resyncs;
        if (fresh.revision == view_.revision) {
            PATROXY_LOG(warn, "dcs") << "a full range at revision " << fresh.revision
                                     << " differs from the watched view (a lost event): taking the range";
        } else {
            PATROXY_LOG(debug, "dcs") << "a full range at revision " << fresh.revision << " is ahead of the watch at "
                                      << view_.revision << ": taking it";
        }
        view_ = std::move(fresh);
        on_view_(view_);
    }
    arm_resync();
}

void dcs_watcher::watch() {
    const auto gen = generation_;
    line_.clear();
    stream_->stream(post("/v3/watch", etcd3::watch_request(prefix_, view_.revision + 1)), cfg_.timeout,
                    watch_silence,
                    [self = shared_from_this(), gen](std::string_view piece) {
                        return gen == self->generation_ && self->on_watch_piece(piece);
                    },
                    [self = shared_from_this(), gen](const std::string& error, http_client::response) {
                        if (gen == self->generation_) {
                            self->on_watch_end(error);
                        }
                    });
}

// Chunk boundaries are not message boundaries: messages end with '\n'.
bool dcs_watcher::on_watch_piece(std::string_view piece) {
    line_.append(piece);
    if (line_.size() > max_line) {
        fail("a watch message over 4 MiB");
        return false;
    }
    std::size_t at = 0;
    bool changed = false;
    for (auto nl = line_.find('\n', at); nl != std::string::npos; nl = line_.find('\n', at)) {
        const std::string_view line(line_.data() + at, nl - at);
        at = nl + 1;
        if (line.find_first_not_of(" \r\t") == std::string_view::npos) {
            continue;
        }
        const auto r = etcd3::apply_watch_line(view_, line, prefix_);
        switch (r.what) {
        case etcd3::watch_line::kind::created:
        case etcd3::watch_line::kind::progress:
            contact();
            break;
        case etcd3::watch_line::kind::events:
            contact();
            ++status_.events;
            changed = true;
            break;
        case etcd3::watch_line::kind::canceled:
        case etcd3::watch_line::kind::error:
        case etcd3::watch_line::kind::bad: {
            if (changed) {
                on_view_(view_);
            }
            const auto why = base::printable(r.why);
            if (auth_expired(why)) {
                token_.clear();
            }
            PATROXY_LOG(info, "dcs") << "watch ended: " << why << "; a fresh range and watch";
            // Etcd does not close a canceled watch: we do, and start over here.
            const auto gen = ++generation_;
            stream_->close();
            net::post(ioc_, [self = shared_from_this(), gen] {
                if (gen == self->generation_ && !self->stopped_) {
                    self->connect_next({});
                }
            });
            return false;
        }
        }
    }
    line_.erase(0, at);
    if (changed) {
        on_view_(view_);
    }
    return true;
}

void dcs_watcher::on_watch_end(const std::string& error) {
    if (!error.empty()) {
        return fail("watch: " + error);
    }
    // The member ended the stream (a restart, a leader change): start over on it.
    PATROXY_LOG(info, "dcs") << "watch ended by " << status_.endpoint << "; a fresh range and watch";
    connect_next({});
}

void dcs_watcher::wait_v2() {
    const auto gen = generation_;
    const auto dir = prefix_.substr(0, prefix_.size() - 1);
    stream_->request(get("/v2/keys" + dir + "?wait=true&recursive=true&waitIndex=" + std::to_string(view_.revision + 1)),
                     v2_wait, [self = shared_from_this(), gen](const std::string& error, http_client::response res) {
                         if (gen != self->generation_) {
                             return;
                         }
                         if (error == "answer: timed out") {
                             return self->wait_v2();  // nothing happened for a minute: wait again
                         }
                         if (!error.empty()) {
                             return self->fail("watch: " + error);
                         }
                         const auto r = etcd2::apply_watch(self->view_, res.body(), self->prefix_);
                         switch (r.what) {
                         case etcd2::watch_result::kind::event:
                             self->contact();
                             ++self->status_.events;
                             self->on_view_(self->view_);
                             return self->wait_v2();
                         case etcd2::watch_result::kind::cleared:
                             PATROXY_LOG(info, "dcs") << base::printable(r.why) << ": a fresh get and wait";
                             return self->range(false);
                         default:
                             return self->fail("watch: " + base::printable(r.why));
                         }
                     });
}

void dcs_watcher::arm_resync() {
    const auto gen = generation_;
    resync_timer_.expires_after(cfg_.resync_interval);
    resync_timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
        if (ec || gen != self->generation_ || self->stopped_) {
            return;
        }
        if (self->unary_->busy()) {
            return self->arm_resync();
        }
        self->range(true);
    });
}

void dcs_watcher::contact() {
    last_contact_ = std::chrono::steady_clock::now();
    status_.connected = true;
    status_.last_event = std::chrono::system_clock::now();
    status_.revision = view_.revision;
    back_off_ = std::chrono::milliseconds{200};
}

void dcs_watcher::fail(std::string why) {
    if (stopped_) {
        return;
    }
    why = base::printable(why);
    if (why.find("CommonName of client sending a request against gateway") != std::string::npos) {
        // etcd's JSON gateway with client-cert-auth and auth on refuses any
        // client certificate that carries a Common Name (embed/serve.go).
        why += " (dcs.tls.cert_file: etcd's gateway takes only a client certificate without a Common Name)";
    }
    if (status_.connected || status_.last_error != why) {
        PATROXY_LOG(warn, "dcs") << status_.endpoint << ": " << why << " (trying the next etcd member in "
                                 << back_off_.count() << " ms)";
    }
    ++status_.errors;
    status_.connected = false;
    status_.last_error = why;
    const auto gen = ++generation_;
    if (unary_) {
        unary_->close();
    }
    if (stream_) {
        stream_->close();
    }
    retry_timer_.expires_after(back_off_);
    back_off_ = std::min(back_off_ * 2, max_back_off);
    retry_timer_.async_wait([self = shared_from_this(), gen, why](beast::error_code ec) {
        if (!ec && gen == self->generation_) {
            self->connect_next(why);
        }
    });
}

}  // namespace patroxy::health
