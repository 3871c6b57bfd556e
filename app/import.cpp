#include "app/import.hpp"

#include "conf/duration.hpp"
#include "conf/loader.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

namespace patroxy::app::import {

namespace {

// One significant line of a file: its number and its words, comments gone.
struct line {
    int number = 0;
    std::vector<std::string> words;
    const std::string& word(std::size_t i) const {
        static const std::string none;
        return i < words.size() ? words[i] : none;
    }
};

// Splits on blanks; '#' starts a comment outside quotes; "..." is one word
// (its quotes dropped). keepalived's braces are words of their own.
std::vector<line> lex(const std::string& text, bool braces) {
    std::vector<line> out;
    std::istringstream in(text);
    std::string raw;
    for (int n = 1; std::getline(in, raw); ++n) {
        line l;
        l.number = n;
        std::string word;
        bool quoted = false;
        bool had_quote = false;
        const auto flush = [&] {
            if (!word.empty() || had_quote) {
                l.words.push_back(word);
            }
            word.clear();
            had_quote = false;
        };
        for (std::size_t i = 0; i < raw.size(); ++i) {
            const char c = raw[i];
            if (quoted) {
                if (c == '"') {
                    quoted = false;
                } else if (c == '\\' && i + 1 < raw.size()) {
                    word += raw[++i];
                } else {
                    word += c;
                }
            } else if (c == '"') {
                quoted = true;
                had_quote = true;
            } else if (c == '#' || (braces && c == '!')) {
                break;
            } else if (c == ' ' || c == '\t' || c == '\r') {
                flush();
            } else if (braces && (c == '{' || c == '}')) {
                flush();
                l.words.emplace_back(1, c);
            } else {
                word += c;
            }
        }
        flush();
        if (!l.words.empty()) {
            out.push_back(std::move(l));
        }
    }
    return out;
}

std::string join(const std::vector<std::string>& words, std::size_t from = 0) {
    std::string s;
    for (std::size_t i = from; i < words.size(); ++i) {
        s += (s.empty() ? "" : " ") + words[i];
    }
    return s;
}

std::optional<long long> integer(const std::string& s) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) {
        return std::nullopt;
    }
    return v;
}

// HAProxy's time format: a number and us, ms, s, m, h or d; no unit is ms.
std::optional<long long> haproxy_ms(const std::string& s) {
    std::size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits])) != 0) {
        ++digits;
    }
    const auto n = integer(s.substr(0, digits));
    if (!n || digits == 0) {
        return std::nullopt;
    }
    const auto unit = s.substr(digits);
    if (unit.empty() || unit == "ms") {
        return *n;
    }
    if (unit == "us") {
        return (*n + 999) / 1000;
    }
    if (unit == "s") {
        return *n * 1000;
    }
    if (unit == "m") {
        return *n * 60'000;
    }
    if (unit == "h") {
        return *n * 3'600'000;
    }
    if (unit == "d") {
        return *n * 86'400'000;
    }
    return std::nullopt;
}

// keepalived's seconds, possibly fractional ("1", "0.5").
std::optional<long long> seconds_ms(const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || v < 0) {
        return std::nullopt;
    }
    return static_cast<long long>(std::llround(v * 1000));
}

// A duration as patroxy writes it: the largest unit that divides it.
std::string duration(long long ms) {
    if (ms != 0 && ms % 3'600'000 == 0) {
        return std::to_string(ms / 3'600'000) + "h";
    }
    if (ms != 0 && ms % 60'000 == 0) {
        return std::to_string(ms / 60'000) + "m";
    }
    if (ms != 0 && ms % 1000 == 0) {
        return std::to_string(ms / 1000) + "s";
    }
    return ms == 0 ? "0s" : std::to_string(ms) + "ms";
}

// A YAML scalar: JSON's double-quoted form is valid YAML.
std::string quoted(const std::string& s) { return nlohmann::json(s).dump(); }

// A plain scalar when it is one patroxy's names allow, else quoted.
std::string name_scalar(const std::string& s) { return conf::valid_member_name(s) ? s : quoted(s); }

struct server {
    std::string name;
    std::string host;
    std::uint16_t port = 5432;
    std::string api_host;
    std::uint16_t api_port = 8008;
    bool check = false;
    std::string where;   // "file:line"
};

struct proxy_section {
    std::string kind;    // listen, frontend, backend
    std::string name;
    std::string where;
    std::string bind_host;
    int bind_port = 0;
    std::optional<int> maxconn;
    std::string httpchk_uri;
    bool has_httpchk = false;
    bool http_mode = false;
    bool stats = false;
    std::optional<std::pair<std::string, std::string>> stats_auth;
    std::string default_backend;
    std::vector<server> servers;
    std::vector<std::string> server_options;   // default-server words
};

// Server options carried over, wherever they appear (default-server or server).
struct check_settings {
    std::optional<long long> inter, fastinter, timeout_check;
    std::optional<int> fall, rise;
};

class converter {
public:
    converter(const source& h, const std::optional<source>& k) : haproxy_(h), keepalived_(k) {}

    result run() {
        read_haproxy();
        if (keepalived_) {
            read_keepalived();
        }
        result r;
        r.yaml = emit();
        // In file order: haproxy.cfg's first, each by line.
        const auto rank = [this](const std::string& n) {
            const auto colon = n.find(':');
            const auto file = n.substr(0, colon);
            const auto number = colon == std::string::npos ? 0 : std::atoi(n.c_str() + colon + 1);
            return std::make_pair(file == haproxy_.name ? 0 : 1, number);
        };
        std::stable_sort(notes_.begin(), notes_.end(),
                         [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
        r.notes = std::move(notes_);
        return r;
    }

private:
    void note(const std::string& file, int number, const std::string& what) {
        notes_.push_back(file + ":" + std::to_string(number) + ": " + what);
    }
    void not_carried(const std::string& file, const line& l, const std::string& why = {}) {
        note(file, l.number, "not carried over: " + join(l.words) + (why.empty() ? "" : " (" + why + ")"));
    }

    // ---- haproxy.cfg ----
    void read_haproxy() {
        const auto& f = haproxy_.name;
        std::string section;
        proxy_section* current = nullptr;
        for (const auto& l : lex(haproxy_.text, false)) {
            const auto& k = l.word(0);
            if (k == "global" || k == "defaults" || k == "listen" || k == "frontend" || k == "backend") {
                section = k;
                current = nullptr;
                if (k == "listen" || k == "frontend" || k == "backend") {
                    proxies_.push_back({});
                    current = &proxies_.back();
                    current->kind = k;
                    current->name = l.word(1);
                    current->where = f + ":" + std::to_string(l.number);
                    current->server_options = defaults_server_;
                    current->maxconn = defaults_maxconn_;
                    current->http_mode = defaults_http_;
                    if (l.words.size() > 2) {
                        std::vector<std::string> rest(l.words.begin() + 2, l.words.end());
                        if (rest.front() == "bind" || rest.front().find(':') != std::string::npos) {
                            bind(*current, rest.front() == "bind" ? line{l.number, {rest.begin() + 1, rest.end()}}
                                                                 : line{l.number, rest}, f);
                        }
                    }
                }
                continue;
            }
            if (section.empty()) {
                not_carried(f, l, "outside any section");
            } else if (section == "global") {
                global(l, f);
            } else if (section == "defaults") {
                defaults(l, f);
            } else if (current != nullptr) {
                proxy_line(*current, l, f);
            } else {
                not_carried(f, l, "section " + section);
            }
        }
    }

    void global(const line& l, const std::string& f) {
        const auto& k = l.word(0);
        if (k == "maxconn" && integer(l.word(1))) {
            global_maxconn_ = static_cast<int>(*integer(l.word(1)));
        } else if (k == "nbthread" && integer(l.word(1))) {
            workers_ = static_cast<int>(*integer(l.word(1)));
        } else if (k == "daemon" || k == "user" || k == "group" || k == "chroot" || k == "pidfile" || k == "uid" ||
                   k == "gid" || k == "master-worker") {
            not_carried(f, l, "the systemd unit runs patroxy as user patroxy");
        } else if (k == "log") {
            not_carried(f, l, "patroxy logs every session to stderr: the journal under systemd");
        } else if (k == "stats") {
            not_carried(f, l, "patroxy's runtime view is /status.json and `patroxy status`");
        } else {
            not_carried(f, l);
        }
    }

    bool timeout(const line& l, const std::string& f) {
        const auto& what = l.word(1);
        const auto ms = haproxy_ms(l.word(2));
        if (!ms) {
            not_carried(f, l, "unreadable time");
            return true;
        }
        std::optional<long long>* slot = what == "connect" ? &connect_
                                       : what == "client"  ? &client_idle_
                                       : what == "server"  ? &server_idle_
                                       : what == "queue"   ? &queue_
                                       : what == "check"   ? &check_.timeout_check
                                                           : nullptr;
        if (slot == nullptr) {
            not_carried(f, l, what == "tunnel" || what == "client-fin" || what == "server-fin"
                                  ? "patroxy's client_idle and server_idle cover a session's silences"
                                  : "");
            return true;
        }
        if (*slot && **slot != *ms) {
            note(f, l.number, "timeout " + what + " " + l.word(2) + " differs from an earlier one (" +
                                  duration(**slot) + "): patroxy has one value for every listener; kept the first");
            return true;
        }
        *slot = ms;
        return true;
    }

    void defaults(const line& l, const std::string& f) {
        const auto& k = l.word(0);
        if (k == "mode") {
            defaults_http_ = l.word(1) == "http";
        } else if (k == "retries" && integer(l.word(1))) {
            retries_ = static_cast<int>(*integer(l.word(1)));
        } else if (k == "timeout") {
            timeout(l, f);
        } else if (k == "maxconn" && integer(l.word(1))) {
            defaults_maxconn_ = static_cast<int>(*integer(l.word(1)));
        } else if (k == "default-server") {
            defaults_server_.insert(defaults_server_.end(), l.words.begin() + 1, l.words.end());
            server_options(l.words, 1, f, l.number, nullptr);
        } else if (k == "option" && (l.word(1) == "tcplog" || l.word(1) == "dontlognull" || l.word(1) == "httplog")) {
            // patroxy logs every session end, with its reason
        } else if (k == "balance" && l.word(1) == "roundrobin") {
        } else {
            not_carried(f, l);
        }
    }

    void bind(proxy_section& p, const line& l, const std::string& f) {
        if (p.bind_port != 0) {
            not_carried(f, l, "a listener has one address in patroxy; kept the first bind");
            return;
        }
        const auto& a = l.word(0);
        const auto colon = a.rfind(':');
        const auto port = colon == std::string::npos ? std::nullopt : integer(a.substr(colon + 1));
        if (!port) {
            not_carried(f, l, "no port");
            return;
        }
        p.bind_port = static_cast<int>(*port);
        auto host = a.substr(0, colon);
        if (host.size() > 1 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
        }
        p.bind_host = host.empty() || host == "*" ? "0.0.0.0" : host == "::" ? "::" : host;
        if (l.words.size() > 1) {
            note(f, l.number, "not carried over: bind options '" + join(l.words, 1) + "'");
        }
    }

    // The server options patroxy has; returns false for a word it does not know.
    void server_options(const std::vector<std::string>& w, std::size_t from, const std::string& f, int number,
                        server* s) {
        for (std::size_t i = from; i < w.size(); ++i) {
            const auto& o = w[i];
            const auto value = i + 1 < w.size() ? w[i + 1] : std::string();
            if (o == "check") {
                if (s != nullptr) {
                    s->check = true;
                }
            } else if (o == "port" && integer(value)) {
                if (s != nullptr) {
                    s->api_port = static_cast<std::uint16_t>(*integer(value));
                } else {
                    default_check_port_ = static_cast<std::uint16_t>(*integer(value));
                }
                ++i;
            } else if (o == "addr" && !value.empty()) {
                if (s != nullptr) {
                    s->api_host = value;
                }
                ++i;
            } else if ((o == "inter" || o == "fastinter") && haproxy_ms(value)) {
                auto& slot = o == "inter" ? check_.inter : check_.fastinter;
                if (slot && *slot != *haproxy_ms(value)) {
                    note(f, number, o + " " + value + " differs from an earlier one (" + duration(*slot) +
                                        "): patroxy checks every member alike; kept the first");
                } else {
                    slot = haproxy_ms(value);
                }
                ++i;
            } else if ((o == "fall" || o == "rise") && integer(value)) {
                auto& slot = o == "fall" ? check_.fall : check_.rise;
                const auto v = static_cast<int>(*integer(value));
                if (slot && *slot != v) {
                    note(f, number, o + " " + value + " differs from an earlier one (" + std::to_string(*slot) +
                                        "): patroxy checks every member alike; kept the first");
                } else {
                    slot = v;
                }
                ++i;
            } else if (o == "on-marked-down" && value == "shutdown-sessions") {
                ++i;  // what patroxy does whenever a member loses its role
            } else {
                const bool takes_value = o == "maxconn" || o == "weight" || o == "downinter" || o == "slowstart" ||
                                         o == "on-marked-up" || o == "on-marked-down" || o == "on-error" ||
                                         o == "error-limit" || o == "maxqueue" || o == "resolvers" || o == "init-addr";
                std::string what = o + (takes_value ? " " + value : "");
                note(f, number, "not carried over: server option '" + what + "'" +
                                    (o == "maxconn" ? " (patroxy limits sessions per listener: listeners[].maxconn)"
                                     : o == "backup" ? " (patroxy routes to the member Patroni names, not to backups)"
                                                     : ""));
                if (takes_value) {
                    ++i;
                }
            }
        }
    }

    void proxy_line(proxy_section& p, const line& l, const std::string& f) {
        const auto& k = l.word(0);
        if (k == "bind") {
            bind(p, line{l.number, {l.words.begin() + 1, l.words.end()}}, f);
        } else if (k == "mode") {
            p.http_mode = l.word(1) == "http";
        } else if (k == "maxconn" && integer(l.word(1))) {
            p.maxconn = static_cast<int>(*integer(l.word(1)));
        } else if (k == "option" && l.word(1) == "httpchk") {
            p.has_httpchk = true;
            // option httpchk [<method>] [<uri> [<version>]]: one word is the URI when it starts with '/'.
            if (l.word(2).rfind('/', 0) == 0) {
                p.httpchk_uri = l.word(2);
            } else if (l.word(3).rfind('/', 0) == 0) {
                p.httpchk_uri = l.word(3);
            } else {
                p.httpchk_uri = "/";
            }
        } else if (k == "http-check" && l.word(1) == "expect" && l.word(2) == "status" && l.word(3) == "200") {
            // patroxy reads Patroni's JSON answer instead of a status code
        } else if (k == "option" && (l.word(1) == "tcplog" || l.word(1) == "dontlognull" || l.word(1) == "httplog")) {
        } else if (k == "balance" && l.word(1) == "roundrobin") {
        } else if (k == "balance") {
            not_carried(f, l, "patroxy balances reads round-robin");
        } else if (k == "timeout") {
            timeout(l, f);
        } else if (k == "retries" && integer(l.word(1))) {
            if (retries_ && *retries_ != *integer(l.word(1))) {
                note(f, l.number, "retries differs from an earlier one: kept " + std::to_string(*retries_));
            } else {
                retries_ = static_cast<int>(*integer(l.word(1)));
            }
        } else if (k == "default-server") {
            p.server_options.insert(p.server_options.end(), l.words.begin() + 1, l.words.end());
            server_options(l.words, 1, f, l.number, nullptr);
        } else if (k == "server") {
            server s;
            s.name = l.word(1);
            s.where = f + ":" + std::to_string(l.number);
            const auto& a = l.word(2);
            const auto colon = a.rfind(':');
            s.host = a.substr(0, colon);
            if (colon != std::string::npos && integer(a.substr(colon + 1))) {
                s.port = static_cast<std::uint16_t>(*integer(a.substr(colon + 1)));
            }
            s.api_port = default_check_port_;
            // Options of default-server first (already checked for notes), then the server's own.
            for (std::size_t i = 0; i < p.server_options.size(); ++i) {
                const auto& o = p.server_options[i];
                if (o == "check") {
                    s.check = true;
                } else if (o == "port" && i + 1 < p.server_options.size() && integer(p.server_options[i + 1])) {
                    s.api_port = static_cast<std::uint16_t>(*integer(p.server_options[i + 1]));
                }
            }
            server_options(l.words, 3, f, l.number, &s);
            if (!s.check) {
                note(f, l.number, "server " + s.name + " has no 'check': patroxy checks every member's Patroni "
                                  "API all the same (port " + std::to_string(s.api_port) + ")");
            }
            p.servers.push_back(std::move(s));
        } else if (k == "default_backend" || k == "use_backend") {
            if (k == "use_backend" && l.words.size() > 2) {
                not_carried(f, l, "conditions: patroxy's listeners route by role alone");
            }
            if (p.default_backend.empty()) {
                p.default_backend = l.word(1);
            }
        } else if (k == "stats") {
            p.stats = true;
            if (l.word(1) == "auth") {
                const auto& up = l.word(2);
                const auto colon = up.find(':');
                if (colon != std::string::npos && !p.stats_auth) {
                    p.stats_auth = std::make_pair(up.substr(0, colon), up.substr(colon + 1));
                } else {
                    not_carried(f, l, "patroxy has one stats user");
                }
            } else if (l.word(1) == "uri" && l.word(2) != "/") {
                not_carried(f, l, "patroxy's page is at / (and /status.json, /metrics, /health)");
            } else if (l.word(1) != "enable" && l.word(1) != "uri") {
                not_carried(f, l);
            }
        } else {
            not_carried(f, l);
        }
    }

    // ---- keepalived.conf ----
    struct block {
        std::string name;                 // first words
        std::vector<std::string> args;
        int number = 0;
        std::vector<line> lines;          // direct statements
        std::vector<block> children;
    };

    block parse_blocks() {
        block root;
        std::vector<block*> stack{&root};
        for (const auto& l : lex(keepalived_->text, true)) {
            std::vector<std::string> words;
            for (const auto& w : l.words) {
                if (w == "{") {
                    block b;
                    b.number = l.number;
                    b.name = words.empty() ? std::string() : words.front();
                    if (words.size() > 1) {
                        b.args.assign(words.begin() + 1, words.end());
                    }
                    words.clear();
                    stack.back()->children.push_back(std::move(b));
                    stack.push_back(&stack.back()->children.back());
                } else if (w == "}") {
                    if (!words.empty()) {
                        stack.back()->lines.push_back({l.number, words});
                        words.clear();
                    }
                    if (stack.size() > 1) {
                        stack.pop_back();
                    }
                } else {
                    words.push_back(w);
                }
            }
            if (!words.empty()) {
                stack.back()->lines.push_back({l.number, words});
            }
        }
        return root;
    }

    void read_keepalived() {
        const auto& f = keepalived_->name;
        const auto root = parse_blocks();
        std::map<std::string, const block*> scripts;
        for (const auto& b : root.children) {
            if (b.name == "vrrp_script" && !b.args.empty()) {
                scripts[b.args.front()] = &b;
            }
        }
        bool have_instance = false;
        for (const auto& l : root.lines) {
            not_carried(f, l);
        }
        for (const auto& b : root.children) {
            if (b.name == "vrrp_script") {
                continue;  // read with the instance that tracks it
            }
            if (b.name != "vrrp_instance" || have_instance) {
                note(f, b.number, "not carried over: " + b.name + (b.args.empty() ? "" : " " + join(b.args)) + " { ... }" +
                                      (b.name == "vrrp_instance" ? " (patroxy holds one VIP; kept the first instance)"
                                       : b.name == "global_defs" ? " (router_id, notification mail: patroxy has none)"
                                                                 : ""));
                continue;
            }
            have_instance = true;
            instance(b, scripts, f);
        }
        if (!have_instance) {
            note(f, 1, "no vrrp_instance: the VIP stays disabled");
        }
    }

    void instance(const block& b, const std::map<std::string, const block*>& scripts, const std::string& f) {
        vip_ = true;
        vip_from_ = f + ":" + std::to_string(b.number) + " vrrp_instance " + join(b.args);
        for (const auto& l : b.lines) {
            const auto& k = l.word(0);
            const auto& v = l.word(1);
            if (k == "interface") {
                vip_interface_ = v;
            } else if (k == "virtual_router_id" && integer(v)) {
                vrid_ = static_cast<int>(*integer(v));
            } else if (k == "priority" && integer(v)) {
                priority_ = static_cast<int>(*integer(v));
            } else if (k == "advert_int" && seconds_ms(v)) {
                advert_ms_ = seconds_ms(v);
            } else if (k == "nopreempt") {
                preempt_ = false;
            } else if (k == "preempt_delay" && seconds_ms(v)) {
                preempt_delay_ms_ = seconds_ms(v);
            } else if (k == "garp_master_repeat" && integer(v)) {
                garp_count_ = static_cast<int>(*integer(v));
            } else if (k == "state") {
                not_carried(f, l, "patroxy starts as backup and the priority decides who is master, as VRRP does "
                                  "once both hosts run");
            } else if (k == "version" || k == "vrrp_version") {
                if (v != "3") {
                    not_carried(f, l, "patroxy speaks VRRP version 3 (RFC 5798): set keepalived's peers to "
                                      "vrrp_version 3 while both run");
                }
            } else if (k == "unicast_src_ip") {
                not_carried(f, l, "patroxy sends from the interface's own address");
            } else {
                not_carried(f, l);
            }
        }
        for (const auto& c : b.children) {
            if (c.name == "virtual_ipaddress") {
                for (const auto& l : c.lines) {
                    if (vip_address_.empty()) {
                        vip_address_ = l.word(0);
                        if (l.words.size() > 1) {
                            if (l.word(1) == "dev" && !l.word(2).empty() && l.word(2) != vip_interface_) {
                                note(f, l.number, "the VIP goes on " + l.word(2) + " (dev), not on " + vip_interface_);
                                vip_interface_ = l.word(2);
                            } else if (l.word(1) != "dev") {
                                note(f, l.number, "not carried over: '" + join(l.words, 1) + "' after the address");
                            }
                        }
                    } else {
                        not_carried(f, l, "patroxy holds one VIP; kept the first address");
                    }
                }
            } else if (c.name == "unicast_peer") {
                for (const auto& l : c.lines) {
                    unicast_peers_.push_back(l.word(0));
                    if (l.words.size() > 1) {
                        note(f, l.number, "not carried over: '" + join(l.words, 1) + "' after the peer");
                    }
                }
            } else if (c.name == "track_script") {
                for (const auto& l : c.lines) {
                    track(l, scripts, f);
                }
            } else if (c.name == "authentication") {
                note(f, c.number, "not carried over: authentication { ... } (VRRPv3 has no authentication, RFC 5798 "
                                  "9; use unicast_peers or a separate network)");
            } else {
                note(f, c.number, "not carried over: " + c.name + " { ... }");
            }
        }
    }

    // track_script { NAME [weight W] }: the weight from here or the script.
    void track(const line& l, const std::map<std::string, const block*>& scripts, const std::string& f) {
        const auto it = scripts.find(l.word(0));
        std::optional<int> weight;
        if (l.word(1) == "weight" && integer(l.word(2))) {
            weight = static_cast<int>(*integer(l.word(2)));
        }
        if (it != scripts.end()) {
            for (const auto& sl : it->second->lines) {
                if (sl.word(0) == "weight" && integer(sl.word(1)) && !weight) {
                    weight = static_cast<int>(*integer(sl.word(1)));
                } else if (sl.word(0) == "script") {
                    note(f, sl.number, "not carried over: script " + quoted(sl.word(1)) +
                                           " (patroxy tracks itself: its priority drops while it cannot route writes "
                                           "for vip.unhealthy_after)");
                } else if (sl.word(0) != "weight") {
                    not_carried(f, sl, "patroxy's own check follows health.interval, fall and rise");
                }
            }
        } else {
            note(f, l.number, "track_script " + l.word(0) + ": no vrrp_script of that name");
        }
        if (track_weight_) {
            note(f, l.number, "not carried over: a second tracked script (patroxy tracks one condition)");
            return;
        }
        // keepalived: a positive weight is added while the script succeeds, a
        // negative one taken while it fails, no weight is FAULT on failure.
        // patroxy takes `track_weight` while it cannot route writes (0: FAULT):
        // the same difference between a healthy and an unhealthy host.
        track_weight_ = weight ? std::abs(*weight) : 0;
        if (weight && *weight > 0) {
            note(f, l.number, "track_script weight " + std::to_string(*weight) + " is added while healthy in "
                              "keepalived; patroxy subtracts " + std::to_string(*weight) + " while unhealthy: the "
                              "same gap between the hosts, with the configured priority as the healthy one");
        }
    }

    // ---- patroxy.yml ----
    const proxy_section* backend_named(const std::string& name) const {
        for (const auto& p : proxies_) {
            if (p.kind == "backend" && p.name == name) {
                return &p;
            }
        }
        return nullptr;
    }

    std::string emit() {
        std::ostringstream y;
        y << "# patroxy.yml written by `patroxy import` from " << haproxy_.name
          << (keepalived_ ? " and " + keepalived_->name : std::string()) << ".\n"
          << "# Check it with: patroxy --check-config FILE. Members are checked with GET /patroni on\n"
          << "# their REST API; with a dcs: section (see patroxy.yml(5)) the leader key decides.\n\n";
        if (global_maxconn_) {
            y << "maxconn: " << *global_maxconn_ << "                 # global maxconn\n";
        }
        if (workers_) {
            y << "workers: " << *workers_ << "                   # nbthread\n";
        }
        // Members: every server line, by name, in order of appearance.
        std::vector<server> members;
        std::map<std::string, std::size_t> by_name;
        struct listener {
            std::string name, role, bind, where, checked;
            int port = 0;
            std::optional<int> maxconn;
            std::vector<std::string> members;
        };
        std::vector<listener> listeners;
        std::optional<std::uint64_t> max_lag;
        bool read_only_leader = false;
        const proxy_section* stats = nullptr;
        for (const auto& p : proxies_) {
            if (p.kind == "backend") {
                continue;
            }
            if (p.stats || (p.http_mode && !p.has_httpchk && p.servers.empty() && p.default_backend.empty())) {
                if (stats == nullptr) {
                    stats = &p;
                } else {
                    notes_.push_back(p.where + ": not carried over: a second stats listener '" + p.name + "'");
                }
                continue;
            }
            const proxy_section* servers_from = &p;
            const proxy_section* check_from = &p;
            if (p.kind == "frontend") {
                const auto* b = backend_named(p.default_backend);
                if (b == nullptr) {
                    notes_.push_back(p.where + ": not carried over: frontend " + p.name + " (no backend '" +
                                     p.default_backend + "')");
                    continue;
                }
                servers_from = b;
                check_from = b;
            }
            if (p.bind_port == 0) {
                notes_.push_back(p.where + ": not carried over: " + p.kind + " " + p.name + " (no bind)");
                continue;
            }
            if (servers_from->servers.empty()) {
                notes_.push_back(p.where + ": not carried over: " + p.kind + " " + p.name + " (no server lines)");
                continue;
            }
            listener l;
            l.name = p.name;
            l.bind = p.bind_host;
            l.port = p.bind_port;
            l.where = p.where;
            l.maxconn = p.maxconn ? p.maxconn : servers_from->maxconn;
            // The check's URI says what the listener is for (Patroni's REST API).
            auto uri = check_from->has_httpchk ? check_from->httpchk_uri : std::string();
            std::string query;
            if (const auto q = uri.find('?'); q != std::string::npos) {
                query = uri.substr(q + 1);
                uri = uri.substr(0, q);
            }
            l.checked = check_from->has_httpchk ? "option httpchk " + check_from->httpchk_uri : "no httpchk";
            if (uri == "/" || uri == "/master" || uri == "/primary" || uri == "/leader" || uri == "/read-write") {
                l.role = "write";
            } else if (uri == "/replica" || uri == "/read-only" || uri == "/asynchronous" || uri == "/async" ||
                       uri == "/synchronous" || uri == "/sync") {
                l.role = "read";
                if (uri == "/read-only") {
                    read_only_leader = true;
                    notes_.push_back(check_from->where + ": /read-only also routes to the leader; patroxy's read "
                                     "listener uses replicas and, with health.read_fallback_to_leader, the leader "
                                     "when none is healthy");
                } else if (uri != "/replica") {
                    notes_.push_back(check_from->where + ": not carried over: the " + uri +
                                     " filter (patroxy's read listener uses every healthy replica)");
                }
            } else if (!check_from->has_httpchk) {
                l.role = "write";
                notes_.push_back(p.where + ": " + p.name + " has no option httpchk: taken as a write listener "
                                 "(HAProxy sent to any server that accepted a TCP connection)");
            } else {
                l.role = "write";
                notes_.push_back(check_from->where + ": the check URI " + check_from->httpchk_uri +
                                 " is not one of Patroni's role endpoints: taken as a write listener");
            }
            for (const auto& kv : split(query, '&')) {
                if (kv.rfind("lag=", 0) == 0) {
                    auto v = kv.substr(4);
                    const auto bytes = conf::parse_size(v);
                    if (bytes) {
                        max_lag = bytes;
                    }
                } else if (!kv.empty()) {
                    notes_.push_back(check_from->where + ": not carried over: the check's parameter " + kv);
                }
            }
            for (const auto& s : servers_from->servers) {
                const auto it = by_name.find(s.name);
                if (it == by_name.end()) {
                    by_name[s.name] = members.size();
                    members.push_back(s);
                } else {
                    const auto& m = members[it->second];
                    if (m.host != s.host || m.port != s.port || m.api_port != s.api_port || m.api_host != s.api_host) {
                        notes_.push_back(s.where + ": server " + s.name + " differs from the one at " + m.where +
                                         ": kept the first");
                    }
                }
                l.members.push_back(s.name);
            }
            listeners.push_back(std::move(l));
        }
        y << "members:\n";
        for (const auto& m : members) {
            const auto api_host = m.api_host.empty() ? m.host : m.api_host;
            const bool v6 = api_host.find(':') != std::string::npos;
            y << "  - name: " << name_scalar(m.name) << "\n"
              << "    host: " << quoted(m.host) << "\n"
              << "    port: " << m.port << "\n"
              << "    api: " << quoted("http://" + (v6 ? "[" + api_host + "]" : api_host) + ":" + std::to_string(m.api_port))
              << "   # " << m.where << "\n";
        }
        if (members.empty()) {
            y << "  []\n";
        }
        y << "\nlisteners:\n";
        for (const auto& l : listeners) {
            y << "  - name: " << name_scalar(l.name) << "          # " << l.where << ", " << l.checked << "\n"
              << "    role: " << l.role << "\n"
              << "    bind: " << quoted(l.bind) << "\n"
              << "    port: " << l.port << "\n";
            if (l.maxconn) {
                y << "    maxconn: " << *l.maxconn << "\n";
            }
            if (l.role == "read") {
                y << "    balance: roundrobin\n";
            }
            std::vector<std::string> all;
            for (const auto& m : members) {
                all.push_back(m.name);
            }
            if (l.members != all) {
                y << "    members: [";
                for (std::size_t i = 0; i < l.members.size(); ++i) {
                    y << (i == 0 ? "" : ", ") << name_scalar(l.members[i]);
                }
                y << "]\n";
            }
        }
        if (listeners.empty()) {
            y << "  []\n";
        }
        y << "\nhealth:                        # default-server inter/fastinter/fall/rise, timeout check\n";
        y << "  interval: " << duration(check_.inter.value_or(2000)) << (check_.inter ? "" : "    # HAProxy's default inter") << "\n";
        if (check_.fastinter) {
            y << "  fast_interval: " << duration(std::min(*check_.fastinter, check_.inter.value_or(2000))) << "\n";
        } else if (check_.inter.value_or(2000) < 500) {
            y << "  fast_interval: " << duration(check_.inter.value_or(2000)) << "\n";
        }
        if (check_.timeout_check) {
            y << "  timeout: " << duration(std::min(*check_.timeout_check, 60'000LL)) << "\n";
            if (*check_.timeout_check > 60'000) {
                notes_.push_back(haproxy_.name + ": timeout check above 60s: patroxy's health.timeout is at most 60s");
            }
        }
        y << "  fall: " << check_.fall.value_or(3) << "\n"
          << "  rise: " << check_.rise.value_or(2) << "\n";
        if (max_lag) {
            y << "  max_lag: " << *max_lag << "              # ?lag= on the replica check\n";
        }
        if (read_only_leader) {
            y << "  read_fallback_to_leader: true  # /read-only routed to the leader too\n";
        }
        y << "\ntimeouts:                      # defaults: timeout connect/client/server/queue, retries\n";
        if (connect_) {
            y << "  connect: " << duration(*connect_) << "\n";
        }
        if (client_idle_) {
            y << "  client_idle: " << duration(*client_idle_) << "\n";
        }
        if (server_idle_) {
            y << "  server_idle: " << duration(*server_idle_) << "\n";
        }
        if (queue_) {
            y << "  wait_for_backend: " << duration(*queue_) << "\n";
        }
        if (retries_) {
            y << "  retries: " << *retries_ << "\n";
        }
        y << "  drain: 30s                   # SIGTERM, reloads, upgrades: sessions end at idle points\n";

        y << "\nstats:\n  enabled: true\n";
        if (stats != nullptr && stats->bind_port != 0) {
            y << "  bind: " << quoted(stats->bind_host) << "            # " << stats->where << " listen " << stats->name
              << "\n  port: " << stats->bind_port << "\n";
            if (stats->stats_auth) {
                y << "  auth: {username: " << quoted(stats->stats_auth->first)
                  << ", password: " << quoted(stats->stats_auth->second) << "}\n";
            }
        } else {
            y << "  bind: \"127.0.0.1\"           # HAProxy had no stats listener: loopback only\n  port: 7000\n";
        }

        y << "\nvip:\n";
        if (!vip_) {
            y << "  enabled: false               # no keepalived.conf given\n";
        } else {
            y << "  enabled: true                # " << vip_from_ << "\n";
            if (!vip_interface_.empty()) {
                y << "  interface: " << quoted(vip_interface_) << "\n";
            }
            if (!vip_address_.empty()) {
                y << "  address: " << quoted(vip_address_) << "\n";
            } else {
                notes_.push_back(keepalived_->name + ": no virtual_ipaddress: vip.address must be added");
            }
            if (vrid_) {
                y << "  virtual_router_id: " << *vrid_ << "\n";
            }
            if (priority_) {
                y << "  priority: " << std::min(*priority_, 254) << "\n";
                if (*priority_ == 255) {
                    notes_.push_back(keepalived_->name + ": priority 255 (the address owner) becomes 254: patroxy "
                                     "never owns the VIP");
                }
            }
            if (advert_ms_) {
                y << "  advert_interval: " << duration(*advert_ms_) << "\n";
            }
            y << "  preempt: " << (preempt_ ? "true" : "false") << "\n";
            if (preempt_delay_ms_) {
                y << "  preempt_delay: " << duration(*preempt_delay_ms_) << "\n";
            }
            if (!unicast_peers_.empty()) {
                y << "  unicast_peers: [";
                for (std::size_t i = 0; i < unicast_peers_.size(); ++i) {
                    y << (i == 0 ? "" : ", ") << quoted(unicast_peers_[i]);
                }
                y << "]\n";
            }
            if (garp_count_) {
                y << "  garp_count: " << *garp_count_ << "\n";
            }
            y << "  track_weight: " << track_weight_.value_or(0)
              << (track_weight_ ? "" : "              # no track_script weight: FAULT while unable to route writes")
              << "\n";
        }
        return y.str();
    }

    static std::vector<std::string> split(const std::string& s, char sep) {
        std::vector<std::string> out;
        std::string cur;
        for (const char c : s) {
            if (c == sep) {
                out.push_back(cur);
                cur.clear();
            } else {
                cur += c;
            }
        }
        if (!cur.empty()) {
            out.push_back(cur);
        }
        return out;
    }

    const source& haproxy_;
    const std::optional<source>& keepalived_;
    std::vector<std::string> notes_;
    std::vector<proxy_section> proxies_;
    std::vector<std::string> defaults_server_;
    std::optional<int> defaults_maxconn_;
    bool defaults_http_ = false;
    std::uint16_t default_check_port_ = 8008;
    check_settings check_;
    std::optional<long long> connect_, client_idle_, server_idle_, queue_;
    std::optional<int> retries_, global_maxconn_, workers_;
    bool vip_ = false;
    std::string vip_from_, vip_interface_, vip_address_;
    std::optional<int> vrid_, priority_, garp_count_, track_weight_;
    std::optional<long long> advert_ms_, preempt_delay_ms_;
    bool preempt_ = true;
    std::vector<std::string> unicast_peers_;
};

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

result convert(const source& haproxy, const std::optional<source>& keepalived) {
    return converter(haproxy, keepalived).run();
}

int run(const std::vector<std::string>& args) {
    std::vector<std::string> files;
    std::string out_path;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if ((args[i] == "-o" || args[i] == "--output") && i + 1 < args.size()) {
            out_path = args[++i];
        } else if (args[i] == "-h" || args[i] == "--help") {
            std::cout << "usage: patroxy import haproxy.cfg [keepalived.conf] [-o patroxy.yml]\n";
            return 0;
        } else {
            files.push_back(args[i]);
        }
    }
    if (files.empty() || files.size() > 2) {
        std::cerr << "usage: patroxy import haproxy.cfg [keepalived.conf] [-o patroxy.yml]\n";
        return 2;
    }
    std::vector<source> sources;
    for (const auto& f : files) {
        auto text = read_file(f);
        if (!text) {
            std::cerr << "patroxy import: " << f << ": cannot read the file\n";
            return 2;
        }
        sources.push_back({f, std::move(*text)});
    }
    const std::optional<source> keepalived = sources.size() > 1 ? std::optional<source>(sources[1]) : std::nullopt;
    const auto r = convert(sources[0], keepalived);
    for (const auto& n : r.notes) {
        std::cerr << n << "\n";
    }
    if (out_path.empty()) {
        std::cout << r.yaml;
    } else {
        std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
        out << r.yaml;
        if (!out.flush()) {
            std::cerr << "patroxy import: " << out_path << ": cannot write the file\n";
            return 2;
        }
    }
    // Validated as --check-config validates a file.
    const auto name = out_path.empty() ? std::string("(imported patroxy.yml)") : out_path;
    try {
        const auto cfg = conf::load_text(r.yaml, name);
        std::cerr << name << ": valid (" << cfg.members.size() << " members, " << cfg.listeners.size()
                  << " listeners); " << r.notes.size() << " note(s) above\n";
        return 0;
    } catch (const conf::config_error& e) {
        std::cerr << e.what() << "patroxy import: the result does not validate: fix it by hand, or the input\n";
        return 2;
    }
}

}  // namespace patroxy::app::import
