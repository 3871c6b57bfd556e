#pragma once
// The YAML reader every part of the loader shares: typed getters that
// record a problem (file:line:col, the key's path, what was expected) and
// go on, so that one pass reports everything wrong with a file. Internal to
// conf/: only the loader's sources include it.

#include "conf/config.hpp"
#include "conf/duration.hpp"

#include <arpa/inet.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace patroxy::conf::detail {


inline std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) {
        out += l;
        out += '\n';
    }
    return out;
}

inline bool is_ipv4(const std::string& s) {
    in_addr a{};
    return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

inline bool is_ip(const std::string& s) {
    in6_addr a6{};
    return is_ipv4(s) || inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

inline bool is_wildcard(const std::string& s) { return s == "0.0.0.0" || s == "::"; }

// A host name as RFC 1123 allows it: dot-separated labels of letters, digits
// and '-', none starting or ending with '-', the last not all digits (so a
// mistyped address such as 10.0.0.300 is not taken for a name).
inline bool is_host_name(const std::string& s) {
    if (s.empty() || s.size() > 253) {
        return false;
    }
    const auto last = s.substr(s.rfind('.') == std::string::npos ? 0 : s.rfind('.') + 1);
    if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return false;
    }
    std::size_t label = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        const char c = i < s.size() ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || (label == 0 && c == '-')) {
            return false;
        }
        ++label;
    }
    return true;
}

inline bool is_host(const std::string& s) { return is_ip(s) || is_host_name(s); }

// "host:port", "[v6]:port" or a URL "http(s)://host:port"; the port may be left out.
inline bool split_host_port(std::string text, std::string& host, std::uint16_t& port, std::string& why) {
    if (const auto scheme = text.find("://"); scheme != std::string::npos) {
        text = text.substr(scheme + 3);
    }
    text = text.substr(0, text.find('/'));
    std::string port_text;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos) {
            why = "unterminated IPv6 address";
            return false;
        }
        host = text.substr(1, close - 1);
        if (close + 1 < text.size() && text[close + 1] == ':') {
            port_text = text.substr(close + 2);
        }
    } else {
        const auto colon = text.find(':');
        if (colon != text.rfind(':')) {
            host = text;  // a bare IPv6 address
        } else {
            host = text.substr(0, colon);
            if (colon != std::string::npos) {
                port_text = text.substr(colon + 1);
            }
        }
    }
    if (!is_host(host)) {
        why = "expected an IP address or a host name, got '" + host + "'";
        return false;
    }
    if (!port_text.empty()) {
        unsigned p = 0;
        const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || p == 0 || p > 65535) {
            why = "bad port '" + port_text + "'";
            return false;
        }
        port = static_cast<std::uint16_t>(p);
    }
    return true;
}

// Walks the YAML tree, fills a config, and collects problems with their marks.

class reader {
public:
    explicit reader(std::string source) : source_(std::move(source)) {}

    void problem(const YAML::Node& at, const std::string& path, const std::string& msg) {
        std::ostringstream line;
        line << source_;
        const auto mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
        if (mark.line >= 0) {
            // yaml-cpp's marks are 0-based; editors and compilers count from 1.
            line << ':' << mark.line + 1 << ':' << mark.column + 1;
        }
        line << ": " << (path.empty() ? "(top level)" : path) << ": " << msg;
        problems_.push_back(line.str());
    }

    bool failed() const { return !problems_.empty(); }
    const std::vector<std::string>& problems() const { return problems_; }

    // A map is required; reports any key not in `allowed`.
    bool check_map(const YAML::Node& n, const std::string& path, std::initializer_list<std::string_view> allowed) {
        if (!n.IsMap()) {
            problem(n, path, "expected a mapping of keys to values");
            return false;
        }
        for (const auto& kv : n) {
            const auto key = kv.first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
                std::string list;
                for (auto a : allowed) {
                    list += (list.empty() ? "" : ", ") + std::string(a);
                }
                problem(kv.first, join(path, key), "unknown key (expected one of: " + list + ")");
            }
        }
        return true;
    }

    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    // Integer in [lo, hi].
    template <class Int>
    void integer(const YAML::Node& map, const std::string& path, const char* key, Int& out, long long lo, long long hi) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        const auto where = join(path, key);
        long long value = 0;
        const std::string s = n.IsScalar() ? n.Scalar() : std::string{};
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
        if (!n.IsScalar() || s.empty() || ec != std::errc{} || end != s.data() + s.size() || value < lo || value > hi) {
            problem(n, where, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                                  ", got '" + describe(n) + "'");
            return;
        }
        out = static_cast<Int>(value);
    }

    void boolean(const YAML::Node& map, const std::string& path, const char* key, bool& out) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        bool value = false;
        if (!n.IsScalar() || !YAML::convert<bool>::decode(n, value)) {
            problem(n, join(path, key), "expected true or false, got '" + describe(n) + "'");
            return;
        }
        out = value;
    }

    // String; `required` reports a missing key at the map.
    bool string(const YAML::Node& map, const std::string& path, const char* key, std::string& out, bool required = false) {
        const YAML::Node n = map[key];
        if (!n) {
            if (required) {
                problem(map, join(path, key), "is required");
            }
            return false;
        }
        if (!n.IsScalar() || n.Scalar().empty()) {
            problem(n, join(path, key), "expected a non-empty string");
            return false;
        }
        out = n.Scalar();
        return true;
    }

    void duration(const YAML::Node& map, const std::string& path, const char* key, milliseconds& out, milliseconds lo,
                  milliseconds hi) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        const auto value = n.IsScalar() ? parse_duration(n.Scalar()) : std::nullopt;
        if (!value || *value < lo || *value > hi) {
            problem(n, join(path, key), "expected a duration from " + show(lo) + " to " + show(hi) +
                                            " (units ms, s, m, h), got '" + describe(n) + "'");
            return;
        }
        out = *value;
    }

    void address(const YAML::Node& map, const std::string& path, const char* key, std::string& out, bool v4_only,
                 bool required = false) {
        std::string value;
        if (!string(map, path, key, value, required)) {
            return;
        }
        if (v4_only ? !is_ipv4(value) : !is_ip(value)) {
            problem(map[key], join(path, key),
                    std::string("expected an ") + (v4_only ? "IPv4" : "IPv4 or IPv6") + " address, got '" + value + "'");
            return;
        }
        out = value;
    }

    template <class Enum>
    void choice(const YAML::Node& map, const std::string& path, const char* key, Enum& out,
                std::initializer_list<std::pair<std::string_view, Enum>> options) {
        choice(map, path, key, out, std::span<const std::pair<std::string_view, Enum>>(options.begin(), options.size()));
    }

    template <class Enum>
    void choice(const YAML::Node& map, const std::string& path, const char* key, Enum& out,
                std::span<const std::pair<std::string_view, Enum>> options) {
        const YAML::Node n = map[key];
        if (!n) {
            return;
        }
        std::string list;
        for (const auto& [name, value] : options) {
            if (n.IsScalar() && n.Scalar() == name) {
                out = value;
                return;
            }
            list += (list.empty() ? "'" : ", '") + std::string(name) + "'";
        }
        problem(n, join(path, key), "expected one of " + list + ", got '" + describe(n) + "'");
    }

    std::optional<basic_auth> auth(const YAML::Node& map, const std::string& path, const char* key) {
        const YAML::Node n = map[key];
        if (!n) {
            return std::nullopt;
        }
        const auto where = join(path, key);
        if (!check_map(n, where, {"username", "password"})) {
            return std::nullopt;
        }
        basic_auth a;
        string(n, where, "username", a.username, true);
        string(n, where, "password", a.password, true);
        return a;
    }

    std::optional<tls_client_config> tls(const YAML::Node& map, const std::string& path, const char* key) {
        const YAML::Node n = map[key];
        if (!n) {
            return std::nullopt;
        }
        const auto where = join(path, key);
        if (!check_map(n, where, {"ca", "cert", "key", "verify"})) {
            return std::nullopt;
        }
        tls_client_config t;
        string(n, where, "ca", t.ca_file);
        string(n, where, "cert", t.cert_file);
        string(n, where, "key", t.key_file);
        boolean(n, where, "verify", t.verify);
        if (t.cert_file.empty() != t.key_file.empty()) {
            problem(n, where, "a client certificate needs both cert and key");
        }
        for (const auto* file : {&t.ca_file, &t.cert_file, &t.key_file}) {
            if (!file->empty() && ::access(file->c_str(), R_OK) != 0) {
                problem(n, where, "cannot read '" + *file + "'");
            }
        }
        return t;
    }

    static std::string describe(const YAML::Node& n) {
        if (n.IsScalar()) {
            return n.Scalar();
        }
        if (n.IsSequence()) {
            return "a list";
        }
        if (n.IsMap()) {
            return "a mapping";
        }
        return "nothing";
    }

    static std::string show(milliseconds d) {
        const auto ms = d.count();
        if (ms != 0 && ms % 3'600'000 == 0) {
            return std::to_string(ms / 3'600'000) + "h";
        }
        if (ms != 0 && ms % 60'000 == 0) {
            return std::to_string(ms / 60'000) + "m";
        }
        if (ms % 1000 == 0) {
            return std::to_string(ms / 1000) + "s";
        }
        return std::to_string(ms) + "ms";
    }

private:
    std::string source_;
    std::vector<std::string> problems_;
};


/// The `listeners:` list (conf/listeners.cpp); after members and health,
/// whose settings it checks against and inherits.
void read_listeners(reader& r, const YAML::Node& root, config& cfg);

}  // namespace patroxy::conf::detail
