#include "health/dcs.hpp"

#include "health/patroni_report.hpp"

#include <boost/beast/core/detail/base64.hpp>

#include <nlohmann/json.hpp>

#include <charconv>

namespace patroxy::health {
namespace {

using json = nlohmann::json;
namespace b64 = boost::beast::detail::base64;

// What Patroni nests is shallow; anything deeper is refused, not recursed into.
constexpr int max_depth = 16;

std::string text_at(const json& obj, const char* key) {
    const auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

// etcd writes int64 as JSON strings ("revision": "147"); requests may use numbers.
std::optional<std::int64_t> int64_at(const json& obj, const char* key) {
    const auto it = obj.find(key);
    if (it == obj.end()) {
        return std::nullopt;
    }
    if (it->is_number_integer()) {
        return it->get<std::int64_t>();
    }
    if (!it->is_string()) {
        return std::nullopt;
    }
    const auto& s = it->get_ref<const std::string&>();
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size() ? std::optional<std::int64_t>(v) : std::nullopt;
}

dcs_member parse_member(std::string_view value) {
    dcs_member m;
    std::string why;
    const json doc = parse_json_bounded(value, max_depth, why);
    if (!doc.is_object()) {
        return m;  // an unreadable member key: known by name, nowhere to connect
    }
    m.conn_url = text_at(doc, "conn_url");
    m.api_url = text_at(doc, "api_url");
    m.role = text_at(doc, "role");
    m.state = text_at(doc, "state");
    m.replication_state = text_at(doc, "replication_state");
    if (!parse_conn_url(m.conn_url, m.host, m.port)) {
        m.host.clear();
    }
    if (const auto x = doc.find("xlog_location"); x != doc.end() && x->is_number_unsigned()) {
        m.xlog_location = x->get<std::uint64_t>();
    }
    if (const auto t = doc.find("timeline"); t != doc.end() && t->is_number_integer()) {
        m.timeline = t->get<int>();
    }
    if (const auto t = doc.find("tags"); t != doc.end() && t->is_object()) {
        for (const auto& [k, val] : t->items()) {
            m.tags[k] = val.is_string() ? val.get<std::string>()
                                        : val.dump(-1, ' ', false, json::error_handler_t::replace);
        }
    }
    return m;
}

// The part of `key` below `prefix`, or nullopt when it is elsewhere.
std::optional<std::string_view> below(std::string_view key, std::string_view prefix) {
    if (key.size() <= prefix.size() || key.substr(0, prefix.size()) != prefix) {
        return std::nullopt;
    }
    return key.substr(prefix.size());
}

}  // namespace

std::string dcs_prefix(std::string_view ns, std::string_view scope) {
    std::string raw = "/" + std::string(ns) + "/" + std::string(scope) + "/";
    std::string out;
    for (const char c : raw) {
        if (c != '/' || out.empty() || out.back() != '/') {
            out += c;
        }
    }
    return out;
}

std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view t) {
    // YYYY-MM-DDTHH:MM:SS, then optional .fraction, then Z or +HH:MM / -HH:MM (or nothing: UTC).
    const auto digits = [&](std::size_t at, std::size_t n, int& out) {
        if (at + n > t.size()) {
            return false;
        }
        out = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (t[i] < '0' || t[i] > '9') {
                return false;
            }
            out = out * 10 + (t[i] - '0');
        }
        return true;
    };
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (!digits(0, 4, y) || t.size() < 19 || t[4] != '-' || !digits(5, 2, mo) || t[7] != '-' || !digits(8, 2, d) ||
        (t[10] != 'T' && t[10] != ' ') || !digits(11, 2, h) || t[13] != ':' || !digits(14, 2, mi) || t[16] != ':' ||
        !digits(17, 2, s)) {
        return std::nullopt;
    }
    const std::chrono::year_month_day date{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                           std::chrono::day{static_cast<unsigned>(d)}};
    if (!date.ok() || h > 23 || mi > 59 || s > 60) {
        return std::nullopt;
    }
    std::size_t at = 19;
    std::chrono::microseconds fraction{0};
    if (at < t.size() && t[at] == '.') {
        ++at;
        std::int64_t scale = 100000;
        const auto start = at;
        for (; at < t.size() && t[at] >= '0' && t[at] <= '9'; ++at) {
            fraction += std::chrono::microseconds{(t[at] - '0') * scale};
            scale /= 10;
        }
        if (at == start) {
            return std::nullopt;
        }
    }
    std::chrono::minutes offset{0};
    if (at < t.size() && (t[at] == 'Z' || t[at] == 'z')) {
        ++at;
    } else if (at < t.size() && (t[at] == '+' || t[at] == '-')) {
        int oh = 0, om = 0;
        if (!digits(at + 1, 2, oh) || at + 3 >= t.size() || t[at + 3] != ':' || !digits(at + 4, 2, om) || oh > 23 ||
            om > 59) {
            return std::nullopt;
        }
        offset = std::chrono::minutes{(oh * 60 + om) * (t[at] == '-' ? -1 : 1)};
        at += 6;
    }
    if (at != t.size()) {
        return std::nullopt;
    }
    const auto local = std::chrono::sys_days{date} + std::chrono::hours{h} + std::chrono::minutes{mi} +
                       std::chrono::seconds{s} + fraction;
    return std::chrono::time_point_cast<std::chrono::system_clock::duration>(local - offset);
}

bool parse_conn_url(std::string_view url, std::string& host, std::uint16_t& port) {
    const auto scheme = url.find("://");
    if (scheme == std::string_view::npos || (url.substr(0, scheme) != "postgres" && url.substr(0, scheme) != "postgresql")) {
        return false;
    }
    auto rest = url.substr(scheme + 3);
    rest = rest.substr(0, rest.find_first_of("/?"));
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        rest = rest.substr(at + 1);  // user:password@
    }
    std::string_view port_text;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = std::string(rest.substr(1, close - 1));
        if (close + 1 < rest.size() && rest[close + 1] == ':') {
            port_text = rest.substr(close + 2);
        }
    } else {
        const auto colon = rest.find(':');
        host = std::string(rest.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = rest.substr(colon + 1);
        }
    }
    port = 5432;
    if (!port_text.empty()) {
        unsigned p = 0;
        const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || p == 0 || p > 65535) {
            return false;
        }
        port = static_cast<std::uint16_t>(p);
    }
    return !host.empty();
}

void dcs_put(dcs_view& v, std::string_view key, std::string_view value) {
    if (key == "leader") {
        v.leader = std::string(value);
    } else if (key.substr(0, 8) == "members/" && key.size() > 8 && key.find('/', 8) == std::string_view::npos) {
        v.members[std::string(key.substr(8))] = parse_member(value);
    } else if (key == "failover") {
        std::string why;
        const json doc = parse_json_bounded(value, max_depth, why);
        dcs_failover f;
        if (doc.is_object()) {
            f.leader = text_at(doc, "leader");
            f.member = text_at(doc, "member");
            if (const auto at = text_at(doc, "scheduled_at"); !at.empty()) {
                // Unreadable: treated as due (holding writes is the safe side).
                f.scheduled_at = parse_iso8601(at).value_or(std::chrono::system_clock::time_point{});
            }
        }
        if (f.leader.empty() && f.member.empty()) {
            v.failover.reset();
        } else {
            v.failover = std::move(f);
        }
    } else if (key == "sync") {
        std::string why;
        const json doc = parse_json_bounded(value, max_depth, why);
        v.sync_standbys.clear();
        const auto names = doc.is_object() ? text_at(doc, "sync_standby") : std::string{};
        for (std::size_t at = 0; at < names.size();) {
            const auto comma = names.find(',', at);
            const auto one = names.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
            if (!one.empty()) {
                v.sync_standbys.push_back(one);
            }
            at = comma == std::string::npos ? names.size() : comma + 1;
        }
    } else if (key == "config") {
        std::string why;
        const json doc = parse_json_bounded(value, max_depth, why);
        const auto ttl = doc.is_object() ? int64_at(doc, "ttl") : std::nullopt;
        v.ttl = ttl && *ttl > 0 && *ttl < 86400 ? std::optional<std::chrono::seconds>(*ttl) : std::nullopt;
    }
}

void dcs_delete(dcs_view& v, std::string_view key) {
    if (key == "leader") {
        v.leader.reset();
    } else if (key.substr(0, 8) == "members/") {
        v.members.erase(std::string(key.substr(8)));
    } else if (key == "failover") {
        v.failover.reset();
    } else if (key == "sync") {
        v.sync_standbys.clear();
    } else if (key == "config") {
        v.ttl.reset();
    }
}

namespace etcd3 {

std::string base64_encode(std::string_view in) {
    std::string out(b64::encoded_size(in.size()), '\0');
    out.resize(b64::encode(out.data(), in.data(), in.size()));
    return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) {
        return std::nullopt;  // etcd pads: anything else is not one of its values
    }
    for (const char c : in) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                        c == '/' || c == '=';
        if (!ok) {
            return std::nullopt;
        }
    }
    std::string out(b64::decoded_size(in.size()), '\0');
    const auto [written, read] = b64::decode(out.data(), in.data(), in.size());
    out.resize(written);
    return out;
}

std::string range_end(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) {
        end.pop_back();
    }
    if (end.empty()) {
        return std::string(1, '\0');  // every key from the prefix on
    }
    end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
    return end;
}

std::string range_request(std::string_view prefix) {
    return json{{"key", base64_encode(prefix)}, {"range_end", base64_encode(range_end(prefix))}}.dump();
}

std::string watch_request(std::string_view prefix, std::int64_t start_revision) {
    return json{{"create_request",
                 {{"key", base64_encode(prefix)},
                  {"range_end", base64_encode(range_end(prefix))},
                  {"start_revision", std::to_string(start_revision)}}}}
        .dump();
}

std::string auth_request(std::string_view name, std::string_view password) {
    return json{{"name", name}, {"password", password}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<std::string> parse_auth(std::string_view body, std::string& why) {
    const json doc = parse_json_bounded(body, max_depth, why);
    if (!doc.is_object()) {
        why = "not a JSON object";
        return std::nullopt;
    }
    const auto token = text_at(doc, "token");
    if (token.empty()) {
        why = "no token: " + (text_at(doc, "error").empty() ? text_at(doc, "message") : text_at(doc, "error"));
        return std::nullopt;
    }
    return token;
}

namespace {
// One kv of a range or watch answer, relative to the prefix; nullopt when it is not ours.
struct decoded_kv {
    std::string key;
    std::string value;
};
std::optional<decoded_kv> decode_kv(const json& kv, std::string_view prefix) {
    if (!kv.is_object()) {
        return std::nullopt;
    }
    const auto key = base64_decode(text_at(kv, "key"));
    const auto value = base64_decode(text_at(kv, "value"));  // omitted when empty (a DELETE)
    if (!key || !value) {
        return std::nullopt;
    }
    const auto rel = below(*key, prefix);
    if (!rel) {
        return std::nullopt;
    }
    return decoded_kv{std::string(*rel), *value};
}

std::string error_text(const json& doc) {
    if (const auto e = doc.find("error"); e != doc.end()) {
        if (e->is_string()) {
            return e->get<std::string>();
        }
        if (e->is_object()) {
            return text_at(*e, "message");
        }
    }
    return text_at(doc, "message");
}
}  // namespace

std::optional<dcs_view> parse_range(std::string_view body, std::string_view prefix, std::string& why) {
    const json doc = parse_json_bounded(body, max_depth, why);
    if (!doc.is_object()) {
        why = why.empty() ? "not a JSON object" : why;
        return std::nullopt;
    }
    if (doc.contains("error") || !doc.contains("header")) {
        why = "etcd: " + error_text(doc);
        return std::nullopt;
    }
    const auto header = doc.find("header");
    const auto revision = header->is_object() ? int64_at(*header, "revision") : std::nullopt;
    if (!revision) {
        why = "a range answer without a revision";
        return std::nullopt;
    }
    dcs_view v;
    v.revision = *revision;
    if (const auto kvs = doc.find("kvs"); kvs != doc.end() && kvs->is_array()) {  // omitted when none
        for (const auto& kv : *kvs) {
            if (auto d = decode_kv(kv, prefix)) {
                dcs_put(v, d->key, d->value);
            }
        }
    }
    return v;
}

watch_line apply_watch_line(dcs_view& v, std::string_view line, std::string_view prefix) {
    watch_line out;
    const json doc = parse_json_bounded(line, max_depth, out.why);
    if (!doc.is_object()) {
        out.why = out.why.empty() ? "not a JSON object" : out.why;
        return out;
    }
    if (doc.contains("error")) {
        out.what = watch_line::kind::error;
        out.why = "etcd: " + error_text(doc);
        return out;
    }
    const auto result = doc.find("result");
    if (result == doc.end() || !result->is_object()) {
        out.why = "neither a result nor an error";
        return out;
    }
    const auto header = result->find("header");
    out.revision = header != result->end() && header->is_object() ? int64_at(*header, "revision").value_or(0) : 0;
    // Defaults are left out: a PUT event has no "type", watch_id 0 none.
    if (result->value("canceled", false) || int64_at(*result, "compact_revision").value_or(0) != 0) {
        out.what = watch_line::kind::canceled;
        out.why = "watch canceled" + (text_at(*result, "cancel_reason").empty()
                                          ? std::string(" (compacted at " +
                                                        std::to_string(int64_at(*result, "compact_revision").value_or(0)) + ")")
                                          : ": " + text_at(*result, "cancel_reason"));
        return out;
    }
    if (result->value("created", false)) {
        out.what = watch_line::kind::created;
        return out;
    }
    const auto events = result->find("events");
    if (events == result->end() || !events->is_array()) {
        out.what = watch_line::kind::progress;
        return out;
    }
    out.what = watch_line::kind::events;
    // An event at or below the view's revision is in the view already (a
    // watch starts at a range's revision + 1; a resync may get ahead of it).
    const auto base = v.revision;
    for (const auto& e : *events) {
        if (!e.is_object()) {
            continue;
        }
        const auto kv = e.find("kv");
        if (kv == e.end()) {
            continue;
        }
        const auto d = decode_kv(*kv, prefix);
        const auto revision = int64_at(*kv, "mod_revision").value_or(0);
        if (!d || (revision != 0 && revision <= base)) {
            continue;
        }
        if (text_at(e, "type") == "DELETE") {
            dcs_delete(v, d->key);
        } else {
            dcs_put(v, d->key, d->value);
        }
        out.revision = std::max(out.revision, int64_at(*kv, "mod_revision").value_or(0));
    }
    v.revision = std::max(v.revision, out.revision);
    return out;
}

}  // namespace etcd3

namespace etcd2 {

namespace {
// Walks a v2 node (and its children) into the view.
void walk(dcs_view& v, const json& node, std::string_view prefix, int depth) {
    if (!node.is_object() || depth > 4) {
        return;
    }
    if (const auto nodes = node.find("nodes"); nodes != node.end() && nodes->is_array()) {
        for (const auto& child : *nodes) {
            walk(v, child, prefix, depth + 1);
        }
        return;
    }
    const auto key = text_at(node, "key");
    // v2 keys have no trailing slash: "/service/postgres-cluster/leader".
    if (const auto rel = below(key, prefix); rel && node.contains("value")) {
        dcs_put(v, *rel, text_at(node, "value"));
    }
}
}  // namespace

std::optional<dcs_view> parse_get(std::string_view body, std::int64_t etcd_index, std::string_view prefix,
                                  std::string& why) {
    const json doc = parse_json_bounded(body, max_depth, why);
    if (!doc.is_object()) {
        why = why.empty() ? "not a JSON object" : why;
        return std::nullopt;
    }
    dcs_view v;
    v.revision = etcd_index;
    if (doc.contains("errorCode")) {
        // 100 Key not found: an empty cluster (nothing initialized yet).
        if (int64_at(doc, "errorCode") == 100) {
            return v;
        }
        why = "etcd: " + text_at(doc, "message") + " (" + text_at(doc, "cause") + ")";
        return std::nullopt;
    }
    const auto node = doc.find("node");
    if (node == doc.end()) {
        why = "an answer without a node";
        return std::nullopt;
    }
    walk(v, *node, prefix, 0);
    return v;
}

watch_result apply_watch(dcs_view& v, std::string_view body, std::string_view prefix) {
    watch_result out;
    const json doc = parse_json_bounded(body, max_depth, out.why);
    if (!doc.is_object()) {
        out.why = out.why.empty() ? "not a JSON object" : out.why;
        return out;
    }
    if (doc.contains("errorCode")) {
        out.index = int64_at(doc, "index").value_or(0);
        out.what = int64_at(doc, "errorCode") == 401 ? watch_result::kind::cleared : watch_result::kind::error;
        out.why = "etcd: " + text_at(doc, "message") + " (" + text_at(doc, "cause") + ")";
        return out;
    }
    const auto action = text_at(doc, "action");
    const auto node = doc.find("node");
    if (action.empty() || node == doc.end() || !node->is_object()) {
        out.why = "a watch answer without an action or a node";
        return out;
    }
    out.what = watch_result::kind::event;
    out.index = int64_at(*node, "modifiedIndex").value_or(0);
    const auto key = text_at(*node, "key");
    if (const auto rel = below(key, prefix); rel && out.index > v.revision) {
        if (action == "delete" || action == "expire" || action == "compareAndDelete") {
            dcs_delete(v, *rel);
        } else if (!node->value("dir", false)) {
            dcs_put(v, *rel, text_at(*node, "value"));
        }
    }
    v.revision = std::max(v.revision, out.index);
    return out;
}

}  // namespace etcd2

}  // namespace patroxy::health
