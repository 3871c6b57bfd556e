#include "app/cli.hpp"

#include "base/text.hpp"
#include "conf/loader.hpp"
#include "health/http_client.hpp"

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <iostream>
#include <sstream>

namespace patroxy::app::cli {

namespace {

using json = nlohmann::json;

// A value of the document as display text: strings made printable (some are
// chosen by clients of the proxy: no terminal escapes reach the screen),
// numbers as they are, null and missing as "".
std::string text(const json& doc, std::string_view key) {
    if (!doc.is_object()) {
        return {};
    }
    const auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) {
        return {};
    }
    if (it->is_string()) {
        return base::printable(it->get<std::string>());
    }
    if (it->is_boolean()) {
        return it->get<bool>() ? "yes" : "no";
    }
    if (it->is_number_float()) {
        std::ostringstream o;
        o.precision(1);
        o << std::fixed << it->get<double>();
        return o.str();
    }
    if (it->is_number()) {
        return it->dump();
    }
    return {};
}

const json& at(const json& doc, std::string_view key) {
    static const json none;
    if (!doc.is_object()) {
        return none;
    }
    const auto it = doc.find(key);
    return it == doc.end() ? none : *it;
}

double number(const json& doc, std::string_view key) {
    const auto& v = at(doc, key);
    return v.is_number() ? v.get<double>() : 0.0;
}

std::string bytes(const json& v) {
    if (!v.is_number()) {
        return {};
    }
    const auto b = v.get<double>();
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    double shown = b;
    while (shown >= 1024 && u < 4) {
        shown /= 1024;
        ++u;
    }
    std::ostringstream o;
    if (u == 0) {
        o << static_cast<long long>(b) << " B";
    } else {
        o.precision(1);
        o << std::fixed << shown << ' ' << units[u];
    }
    return o.str();
}

std::string age(double seconds) {
    const auto s = static_cast<long long>(seconds);
    std::ostringstream o;
    if (s >= 86400) {
        o << s / 86400 << "d" << (s % 86400) / 3600 << "h";
    } else if (s >= 3600) {
        o << s / 3600 << "h" << (s % 3600) / 60 << "m";
    } else if (s >= 60) {
        o << s / 60 << "m" << s % 60 << "s";
    } else {
        o << s << "s";
    }
    return o.str();
}

// Columns as wide as their widest cell, in patronictl's frame:
// +--------+------+
// | Member | Role |
// +--------+------+
// | pg0    | ...  |
// +--------+------+
class table {
public:
    explicit table(std::vector<std::string> header) : rows_{std::move(header)} {}
    void add(std::vector<std::string> row) {
        row.resize(rows_.front().size());
        rows_.push_back(std::move(row));
    }
    /// `title`, when given, is written into the top border (patronictl's "+ Cluster: x ---+").
    std::string str(const std::string& title = {}) const {
        std::vector<std::size_t> width(rows_.front().size(), 0);
        for (const auto& r : rows_) {
            for (std::size_t i = 0; i < r.size(); ++i) {
                width[i] = std::max(width[i], display_width(r[i]));
            }
        }
        std::string rule = "+";
        for (const auto w : width) {
            rule += std::string(w + 2, '-') + "+";
        }
        std::string out;
        if (!title.empty() && display_width(title) + 4 < rule.size()) {
            out += "+ " + title + " " + rule.substr(display_width(title) + 3) + "\n";
        } else if (!title.empty()) {
            out += title + "\n" + rule + "\n";
        } else {
            out += rule + "\n";
        }
        for (std::size_t r = 0; r < rows_.size(); ++r) {
            out += "|";
            for (std::size_t i = 0; i < width.size(); ++i) {
                out += " " + rows_[r][i] + std::string(width[i] - display_width(rows_[r][i]), ' ') + " |";
            }
            out += "\n";
            if (r == 0) {
                out += rule + "\n";
            }
        }
        return out + rule + "\n";
    }

private:
    // Code points, not bytes (UTF-8 continuation bytes take no column).
    static std::size_t display_width(const std::string& s) {
        return static_cast<std::size_t>(
            std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
    }
    std::vector<std::vector<std::string>> rows_;
};

std::string check_cell(const json& check) {
    auto s = text(check, "status");
    if (s.empty()) {
        return {};
    }
    s += " " + text(check, "health") + "/" + std::to_string(static_cast<int>(number(check, "rise") + number(check, "fall") - 1));
    const auto err = text(check, "last_error");
    if (!err.empty()) {
        s += " (" + base::printable(std::string(base::clip_utf8(err, 48))) + ")";
    }
    return s;
}

}  // namespace

std::string stats_target::url() const {
    const bool v6 = host.find(':') != std::string::npos;
    return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + path;
}

stats_target target_from_config(const conf::config& cfg) {
    stats_target t;
    t.host = cfg.stats.bind == "0.0.0.0" ? "127.0.0.1" : cfg.stats.bind == "::" ? "::1" : cfg.stats.bind;
    t.port = cfg.stats.port;
    t.auth = cfg.stats.auth;
    return t;
}

std::optional<stats_target> target_from_url(const std::string& url, std::string& why) {
    constexpr std::string_view scheme = "http://";
    if (url.rfind(scheme, 0) != 0) {
        why = "expected an http:// URL (the stats port speaks no TLS), got '" + url + "'";
        return std::nullopt;
    }
    stats_target t;
    auto rest = std::string_view(url).substr(scheme.size());
    const auto slash = rest.find('/');
    auto hostport = rest.substr(0, slash);
    if (slash != std::string_view::npos && rest.size() > slash + 1) {
        t.path = std::string(rest.substr(slash));
    }
    std::string_view port;
    if (!hostport.empty() && hostport.front() == '[') {
        const auto close = hostport.find(']');
        if (close == std::string_view::npos) {
            why = "unbalanced [ in '" + url + "'";
            return std::nullopt;
        }
        t.host = std::string(hostport.substr(1, close - 1));
        if (hostport.size() > close + 1 && hostport[close + 1] == ':') {
            port = hostport.substr(close + 2);
        }
    } else {
        const auto colon = hostport.rfind(':');
        t.host = std::string(hostport.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = hostport.substr(colon + 1);
        }
    }
    if (t.host.empty()) {
        why = "no host in '" + url + "'";
        return std::nullopt;
    }
    if (!port.empty()) {
        unsigned p = 0;
        const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
        if (ec != std::errc{} || end != port.data() + port.size() || p == 0 || p > 65535) {
            why = "expected a port from 1 to 65535 in '" + url + "'";
            return std::nullopt;
        }
        t.port = static_cast<std::uint16_t>(p);
    }
    return t;
}

fetched fetch(const stats_target& where, std::chrono::milliseconds timeout) {
    boost::asio::io_context ioc;
    // /status.json lists at most 1,000 sessions: a few hundred KiB.
    auto client = std::make_shared<health::http_client>(ioc, health::http_client::target{where.host, where.port, nullptr, true},
                                                        16 * 1024 * 1024);
    health::http::request<health::http::string_body> req{health::http::verb::get, where.path, 11};
    req.set(health::http::field::host, where.host);
    req.set(health::http::field::user_agent, "patroxy-cli/" PATROXY_VERSION);
    req.set(health::http::field::connection, "close");
    if (where.auth) {
        req.set(health::http::field::authorization, health::basic_auth_header(*where.auth));
    }
    fetched out;
    bool done = false;
    client->request(std::move(req), timeout, [&](const std::string& error, health::http_client::response answer) {
        done = true;
        if (!error.empty()) {
            out.error = error;
        } else if (answer.result_int() != 200) {
            out.error = "HTTP " + std::to_string(answer.result_int()) + " " + std::string(answer.reason());
        } else {
            out.body = std::move(answer.body());
        }
    });
    ioc.run_for(timeout + std::chrono::seconds(1));
    if (!done) {
        out.error = "no answer within " + std::to_string(timeout.count()) + "ms";
    }
    client->close();
    return out;
}

rendered render_status(const json& doc) {
    rendered r;
    const auto& listeners = at(doc, "listeners");
    const auto& members = at(doc, "members");
    // Each cluster's table (a page from before clusters has only "cluster").
    json clusters = at(doc, "clusters");
    if (!clusters.is_array() || clusters.empty()) {
        clusters = json::array({at(doc, "cluster")});
    }
    const bool several = clusters.size() > 1;
    // As /health: every cluster a write or standby_leader listener serves needs its leader (with none, every one).
    const auto writes_to = [&](const std::string& name) {
        return listeners.is_array() && std::any_of(listeners.begin(), listeners.end(), [&](const json& l) {
                   return (!several || text(l, "cluster") == name) &&
                          (text(l, "role") == "write" || text(l, "role") == "standby_leader");
               });
    };
    bool any_writes = false;
    for (const auto& c : clusters) {
        any_writes = any_writes || writes_to(text(c, "name"));
    }
    r.leader_routed = true;
    for (const auto& cluster : clusters) {
        const auto name = text(cluster, "name");
        const auto ours = [&](const json& x) { return !several || text(x, "cluster") == name; };
        const bool routed = at(cluster, "leader").is_string();
        if (!several || writes_to(name) || !any_writes) {
            r.leader_routed = r.leader_routed && routed;
        }
        std::vector<std::string> listener_names;
        if (listeners.is_array()) {
            for (const auto& l : listeners) {
                if (ours(l)) {
                    listener_names.push_back(text(l, "name"));
                }
            }
        }
        std::vector<std::string> header{"Member", "Host", "Role", "State", "TL", "Lag", "Check"};
        for (const auto& n : listener_names) {
            header.push_back(n);
        }
        table m(header);
        if (members.is_array()) {
            for (const auto& mem : members) {
                if (!ours(mem)) {
                    continue;
                }
                std::vector<std::string> row{text(mem, "name"), text(mem, "host") + ":" + text(mem, "port"),
                                             text(mem, "role"), text(mem, "state"), text(mem, "timeline"),
                                             bytes(at(mem, "lag_bytes")), check_cell(at(mem, "check"))};
                for (const auto& n : listener_names) {
                    const auto& on = at(at(mem, "listeners"), n);
                    auto cell = text(on, "role");
                    if (on.is_object() && number(on, "sessions_current") > 0) {
                        cell += " (" + text(on, "sessions_current") + ")";
                    }
                    row.push_back(cell);
                }
                m.add(std::move(row));
            }
        }
        std::string title = "Cluster: " + (several ? name + ", scope " : std::string{}) + text(cluster, "scope") + " (";
        title += routed ? "leader " + text(cluster, "leader") : std::string("NO LEADER ROUTED");
        if (!text(cluster, "leader_source").empty() && routed) {
            title += " from " + text(cluster, "leader_source");
        }
        if (!text(cluster, "timeline").empty()) {
            title += ", timeline " + text(cluster, "timeline");
        }
        if (at(cluster, "paused").is_boolean() && at(cluster, "paused").get<bool>()) {
            title += ", paused";
        }
        if (at(cluster, "split_brain").is_boolean() && at(cluster, "split_brain").get<bool>()) {
            title += ", SPLIT BRAIN";
        }
        if (at(cluster, "writes_held").is_boolean() && at(cluster, "writes_held").get<bool>()) {
            title += ", writes held";
        }
        title += ")";
        r.text += m.str(title);
    }

    table l({"Listener", "Role", "Bind", "Sessions", "Max", "Limit", "Held", "Rate/s", "Total", "In", "Out"});
    if (listeners.is_array()) {
        for (const auto& li : listeners) {
            l.add({text(li, "name"), text(li, "role"), text(li, "bind") + ":" + text(li, "port"),
                   text(li, "sessions_current"), text(li, "sessions_max"), text(li, "sessions_limit"),
                   text(li, "held_current"), text(li, "session_rate_per_second"), text(li, "sessions_total"),
                   bytes(at(li, "bytes_in_total")), bytes(at(li, "bytes_out_total"))});
        }
    }
    r.text += l.str();

    const auto& vip = at(doc, "vip");
    if (vip.is_object()) {
        if (at(vip, "configured").is_boolean() && !at(vip, "configured").get<bool>()) {
            r.text += "VIP: disabled\n";
        } else {
            const auto state = text(vip, "state");
            r.text += "VIP: " + text(vip, "address") + " on " + text(vip, "interface") + ": " + state;
            if (state == "master") {
                r.text += ", held by this host";
            } else if (!text(vip, "master").empty()) {
                r.text += ", held by " + text(vip, "master");
            }
            r.text += " (vrid " + text(vip, "virtual_router_id") + ", priority " + text(vip, "effective_priority") +
                      "/" + text(vip, "priority");
            r.text += ")";
            if (!text(vip, "reason").empty()) {
                r.text += ": " + text(vip, "reason");
            }
            r.text += "\n";
        }
    }
    for (const auto& cluster : clusters) {
        // Each cluster's DCS (the top-level "dcs" on a page from before clusters).
        const auto& dcs = cluster.contains("dcs") ? at(cluster, "dcs") : at(doc, "dcs");
        if (!dcs.is_object()) {
            continue;
        }
        r.text += "DCS" + (several ? " (" + text(cluster, "name") + ")" : std::string{}) + ": " + text(dcs, "type") +
                  " " + text(dcs, "endpoint") + ", " +
                  (at(dcs, "fresh").is_boolean() && at(dcs, "fresh").get<bool>() ? "fresh" : "STALE") +
                  ", leader key " + (text(dcs, "leader").empty() ? std::string("none") : text(dcs, "leader"));
        if (!text(dcs, "last_error").empty()) {
            r.text += ", last error: " + text(dcs, "last_error");
        }
        r.text += "\n";
    }
    const auto& p = at(doc, "patroxy");
    if (p.is_object()) {
        r.text += "patroxy " + text(p, "version") + ", pid " + text(p, "pid") + ", up " +
                  age(number(p, "uptime_seconds")) + ", " + text(p, "connections_current") + "/" +
                  text(p, "connections_limit") + " connections, configuration generation " +
                  text(p, "config_generation");
        const auto& last = at(p, "last_reload");
        if (text(last, "result") == "failed") {
            r.text += ", LAST RELOAD FAILED";
        }
        r.text += "\n";
    }
    return r;
}

std::string render_sessions(const json& doc) {
    table t({"Listener", "Member", "Client", "State", "User", "Database", "Application", "TLS", "Age", "In", "Out"});
    const auto& sessions = at(doc, "sessions");
    std::size_t n = 0;
    if (sessions.is_array()) {
        for (const auto& s : sessions) {
            t.add({text(s, "listener"), text(s, "member"), text(s, "client"), text(s, "state"), text(s, "user"),
                   text(s, "database"), text(s, "application_name"), text(s, "encrypted"),
                   age(number(s, "age_seconds")), bytes(at(s, "bytes_in")), bytes(at(s, "bytes_out"))});
            ++n;
        }
    }
    return t.str() + std::to_string(n) + " session" + (n == 1 ? "" : "s") + " (the longest-running first, at most 1000)\n";
}

int run(const std::string& command, const std::vector<std::string>& args) {
    std::string config_path = "/etc/patroxy/patroxy.yml";
    std::optional<std::string> url;
    std::optional<std::string> user;
    bool as_json = false;
    auto timeout = std::chrono::milliseconds(5000);
    const std::string usage = "usage: patroxy " + command +
                              " [-c FILE] [--url http://HOST:PORT] [--user NAME:PASSWORD] [--json] [--timeout MS]";
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto& a = args[i];
        const bool has_value = i + 1 < args.size();
        if ((a == "-c" || a == "--config") && has_value) {
            config_path = args[++i];
        } else if (a == "--url" && has_value) {
            url = args[++i];
        } else if (a == "--user" && has_value) {
            user = args[++i];
        } else if (a == "--json") {
            as_json = true;
        } else if (a == "--timeout" && has_value) {
            timeout = std::chrono::milliseconds(std::max(100, std::atoi(args[++i].c_str())));
        } else if (a == "-h" || a == "--help") {
            std::cout << usage << "\n";
            return 0;
        } else {
            std::cerr << "patroxy " << command << ": unexpected '" << a << "'\n" << usage << "\n";
            return exit_usage;
        }
    }
    stats_target where;
    if (url) {
        std::string why;
        auto t = target_from_url(*url, why);
        if (!t) {
            std::cerr << "patroxy " << command << ": --url: " << why << "\n";
            return exit_usage;
        }
        where = *t;
        // Credentials from the file still apply to its own stats port.
        try {
            const auto cfg = conf::load_file(config_path);
            const auto mine = target_from_config(cfg);
            if (mine.port == where.port) {
                where.auth = cfg.stats.auth;
            }
        } catch (const conf::config_error&) {
        }
    } else {
        try {
            const auto cfg = conf::load_file(config_path);
            if (!cfg.stats.enabled) {
                std::cerr << "patroxy " << command << ": " << config_path
                          << ": stats.enabled is false: no /status.json to read (give --url)\n";
                return exit_usage;
            }
            where = target_from_config(cfg);
        } catch (const conf::config_error& e) {
            std::cerr << e.what() << "patroxy " << command << ": give --url to read another patroxy\n";
            return exit_usage;
        }
    }
    if (user) {
        const auto colon = user->find(':');
        if (colon == std::string::npos) {
            std::cerr << "patroxy " << command << ": --user: expected NAME:PASSWORD\n";
            return exit_usage;
        }
        where.auth = conf::basic_auth{user->substr(0, colon), user->substr(colon + 1)};
    }
    const auto got = fetch(where, timeout);
    if (!got.error.empty()) {
        std::cerr << "patroxy " << command << ": " << where.url() << ": " << got.error << "\n";
        return exit_unreachable;
    }
    const auto doc = json::parse(got.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        std::cerr << "patroxy " << command << ": " << where.url() << ": the answer is not a JSON object\n";
        return exit_unreachable;
    }
    const bool leader = render_status(doc).leader_routed;  // every cluster's
    if (as_json) {
        std::cout << (command == "sessions" ? at(doc, "sessions") : doc).dump(2) << "\n";
    } else if (command == "sessions") {
        std::cout << render_sessions(doc);
    } else {
        std::cout << render_status(doc).text;
    }
    if (command == "sessions") {
        return 0;
    }
    if (!leader) {
        std::cerr << "patroxy status: no leader is routed\n";
    }
    return leader ? exit_leader : exit_no_leader;
}

}  // namespace patroxy::app::cli
