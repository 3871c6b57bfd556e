#include "health/patroni_report.hpp"

#include "health/dcs.hpp"

#include <nlohmann/json.hpp>

namespace patroxy::health {
namespace {

using json = nlohmann::json;

template <class T>
std::optional<T> number_at(const json& obj, const char* key) {
    const auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_integer()) {
        return std::nullopt;
    }
    return it->get<T>();
}

// nlohmann's value() throws on a type mismatch; Patroni's answer is untrusted input.
std::string string_at(const json& obj, const char* key) {
    const auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

bool truthy(const json& v) {
    if (v.is_boolean()) {
        return v.get<bool>();
    }
    if (v.is_string()) {  // tags written in YAML as strings: "true"
        const auto s = v.get<std::string>();
        return s == "true" || s == "True" || s == "yes" || s == "on";
    }
    return false;
}

}  // namespace

patroni_role role_from_text(std::string_view role) {
    if (role == "master" || role == "primary") {
        return patroni_role::primary;
    }
    if (role == "standby_leader") {
        return patroni_role::standby_leader;
    }
    if (role == "replica") {
        return patroni_role::replica;
    }
    return patroni_role::unknown;
}

std::string_view to_string(patroni_role r) {
    switch (r) {
    case patroni_role::primary: return "primary";
    case patroni_role::standby_leader: return "standby_leader";
    case patroni_role::replica: return "replica";
    case patroni_role::unknown: return "unknown";
    }
    return "unknown";
}

json parse_json_bounded(std::string_view body, int max_depth, std::string& why) {
    // No exceptions: nlohmann's non-throwing parse gives a discarded value on
    // error. Its parser keeps its own stack (no recursion), but dump() and
    // our readers recurse: anything nested deeper than max_depth is refused.
    bool too_deep = false;
    const json::parser_callback_t bound = [&](int depth, json::parse_event_t event, json&) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= max_depth) {
            too_deep = true;
            return false;  // discarded, with everything inside it
        }
        return true;
    };
    json doc = json::parse(body.begin(), body.end(), bound, false);
    if (too_deep) {
        why = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
        return json(json::value_t::discarded);
    }
    if (doc.is_discarded()) {
        why = "body is not valid JSON";
    }
    return doc;
}

std::optional<patroni_report> parse_patroni(std::string_view body, std::string& why) {
    const json doc = parse_json_bounded(body, max_json_depth, why);
    if (doc.is_discarded()) {
        return std::nullopt;
    }
    if (!doc.is_object()) {
        why = "body is not a JSON object";
        return std::nullopt;
    }
    const auto role = doc.find("role");
    const auto state = doc.find("state");
    if (role == doc.end() || !role->is_string() || state == doc.end() || !state->is_string()) {
        why = "no role or state in the answer";
        return std::nullopt;
    }
    patroni_report r;
    r.role_text = role->get<std::string>();
    r.role = role_from_text(r.role_text);
    r.state = state->get<std::string>();
    r.timeline = number_at<int>(doc, "timeline");
    if (const auto x = doc.find("xlog"); x != doc.end() && x->is_object()) {
        if (r.role == patroni_role::primary) {
            r.wal_position = number_at<std::uint64_t>(*x, "location");
        } else {
            const auto received = number_at<std::uint64_t>(*x, "received_location");
            r.replayed_position = number_at<std::uint64_t>(*x, "replayed_location");
            r.wal_position = received;
            if (r.replayed_position && (!received || *r.replayed_position > *received)) {
                r.wal_position = r.replayed_position;
            }
            if (const auto t = x->find("replayed_timestamp"); t != x->end() && t->is_string()) {
                r.replayed_at = parse_iso8601(t->get<std::string>());
            }
        }
    }
    if (const auto p = doc.find("pause"); p != doc.end()) {
        r.pause = truthy(*p);
    }
    if (const auto t = doc.find("tags"); t != doc.end() && t->is_object()) {
        for (const auto& [key, value] : t->items()) {
            r.tags[key] = value.is_string() ? value.get<std::string>() : value.dump();
        }
        if (const auto n = t->find("noloadbalance"); n != t->end()) {
            r.noloadbalance = truthy(*n);
        }
        if (const auto n = t->find("nofailover"); n != t->end()) {
            r.nofailover = truthy(*n);
        }
    }
    if (const auto rep = doc.find("replication"); rep != doc.end() && rep->is_array()) {
        for (const auto& row : *rep) {
            if (!row.is_object()) {
                continue;
            }
            if (string_at(row, "state") == "streaming") {
                ++r.streaming_replicas;
                r.streaming_standbys.push_back(string_at(row, "application_name"));
            }
            const auto sync = string_at(row, "sync_state");
            if (sync == "sync" || sync == "quorum") {
                r.sync_standbys.push_back(string_at(row, "application_name"));
            }
        }
    }
    r.replication_state = string_at(doc, "replication_state");
    for (const char* key : {"sync_standby", "quorum_standby"}) {
        if (const auto f = doc.find(key); f != doc.end() && truthy(*f)) {
            r.sync_standby = true;
        }
    }
    if (const auto p = doc.find("patroni"); p != doc.end() && p->is_object()) {
        r.patroni_version = string_at(*p, "version");
        r.scope = string_at(*p, "scope");
    }
    return r;
}

}  // namespace patroxy::health
