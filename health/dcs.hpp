#pragma once
// What Patroni keeps in its DCS, as patroxy reads it: the leader key (the
// lock that decides who writes), the members' keys (where each one's
// PostgreSQL and REST API are, its role and state), the failover key (a
// switchover announced before anything stops), sync and config. Pure: the
// etcd v3 JSON gateway's and the etcd v2 API's answers are decoded here
// without I/O, into one view of the cluster (health/dcs_watcher.* does the I/O).
//
// Keys live under "<namespace>/<scope>/" (Patroni: namespace /service, or
// Debian's /postgresql-common/ with scope 15-main):
//   leader            the lock holder's name; its lease is `ttl`
//   members/<name>    JSON: conn_url, api_url, state, role, tags, xlog_location, timeline, ...
//   failover          JSON {leader, member, scheduled_at}: a switchover or failover is on
//   sync              JSON {leader, sync_standby: "a,b"|null, quorum}
//   config            JSON: ttl, loop_wait, ... (the cluster's dynamic configuration)
//   status, initialize, history, optime/leader, failsafe: not used for routing

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patroxy::health {

/// One member as its key says.
struct dcs_member {
    std::string conn_url;             ///< postgres://host:port/db
    std::string api_url;              ///< http://host:port/patroni
    std::string host;                 ///< from conn_url, empty when it cannot be read
    std::uint16_t port = 5432;
    std::string role;                 ///< master, primary, replica, standby_leader, ...
    std::string state;                ///< running, streaming, starting, stopped, ...
    std::string replication_state;    ///< streaming, in archive recovery (Patroni 3.0.4+)
    std::map<std::string, std::string> tags;
    std::optional<std::uint64_t> xlog_location;
    std::optional<int> timeline;
    bool operator==(const dcs_member&) const = default;
};

/// A switchover or failover Patroni announced (the failover key). Patroni
/// "cleans up" by writing `{}`: a key naming neither leader nor member is none.
struct dcs_failover {
    std::string leader;                                     ///< from whom (empty: any)
    std::string member;                                     ///< to whom (empty: the best candidate)
    std::optional<std::chrono::system_clock::time_point> scheduled_at;
    bool operator==(const dcs_failover&) const = default;
};

/// The cluster as the DCS said it at `revision`.
struct dcs_view {
    std::int64_t revision = 0;                     ///< etcd v3 revision, or the v2 etcd index
    std::optional<std::string> leader;             ///< who holds the leader key
    std::map<std::string, dcs_member> members;     ///< by name
    std::optional<dcs_failover> failover;          ///< a failover key that names a leader or a member
    std::vector<std::string> sync_standbys;        ///< from the sync key
    std::optional<std::chrono::seconds> ttl;       ///< from the config key
    bool operator==(const dcs_view&) const = default;
};

/// "<namespace>/<scope>/" with single slashes, as Patroni forms it.
std::string dcs_prefix(std::string_view ns, std::string_view scope);

/// A key below the prefix was put (`value`) or deleted; others are ignored.
void dcs_put(dcs_view& v, std::string_view relative_key, std::string_view value);
void dcs_delete(dcs_view& v, std::string_view relative_key);

/// "2016-01-14T10:09:57.1394Z", "2026-12-01T12:00:00+01:00" (what Patroni's
/// scheduled_at holds); nullopt when it is not such a time.
std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text);

/// host and port of "postgres://[user@]host[:port][/db]" (IPv6 in brackets).
bool parse_conn_url(std::string_view url, std::string& host, std::uint16_t& port);

namespace etcd3 {

std::string base64_encode(std::string_view in);
/// nullopt when `in` is not base64.
std::optional<std::string> base64_decode(std::string_view in);
/// The end of a prefix range: the prefix with its last byte below 0xff incremented.
std::string range_end(std::string_view prefix);
/// POST /v3/kv/range for every key under `prefix`.
std::string range_request(std::string_view prefix);
/// POST /v3/watch from `start_revision` (inclusive) for every key under `prefix`.
std::string watch_request(std::string_view prefix, std::int64_t start_revision);
/// POST /v3/auth/authenticate.
std::string auth_request(std::string_view name, std::string_view password);
/// The token of an authenticate answer.
std::optional<std::string> parse_auth(std::string_view body, std::string& why);

/// A range answer as a view (its header's revision); nullopt and `why` when
/// it is an error body or not a range answer.
std::optional<dcs_view> parse_range(std::string_view body, std::string_view prefix, std::string& why);

/// What one line of a watch stream said.
struct watch_line {
    enum class kind {
        created,    ///< the watch is on (header revision)
        events,     ///< puts and deletes, applied to the view
        progress,   ///< a header alone
        canceled,   ///< compacted (or otherwise canceled): range again
        error,      ///< an error object: the stream ends
        bad,        ///< not what etcd writes
    } what = kind::bad;
    std::int64_t revision = 0;
    std::string why;
};
/// Applies one newline-delimited message of /v3/watch to `v`.
watch_line apply_watch_line(dcs_view& v, std::string_view line, std::string_view prefix);

}  // namespace etcd3

namespace etcd2 {

/// A GET ...?recursive=true answer, with the X-Etcd-Index header's value.
std::optional<dcs_view> parse_get(std::string_view body, std::int64_t etcd_index, std::string_view prefix,
                                  std::string& why);

/// What one ?wait=true answer said.
struct watch_result {
    enum class kind {
        event,     ///< applied; wait again from index + 1
        cleared,   ///< 401 "The event in requested index is outdated and cleared": get again
        error,     ///< another error body
        bad,
    } what = kind::bad;
    std::int64_t index = 0;   ///< the event's modifiedIndex (or the error's index)
    std::string why;
};
watch_result apply_watch(dcs_view& v, std::string_view body, std::string_view prefix);

}  // namespace etcd2

}  // namespace patroxy::health
