#pragma once
// `patroxy status` and `patroxy sessions`: a running patroxy's /status.json,
// fetched from its stats port (address and credentials from the
// configuration file, or --url and --user) and printed the way
// `patronictl list` prints a cluster: one table of members with what each
// listener does with them, one of listeners, the VIP. Rendering is pure (a
// JSON document in, text out) so that it is tested without a network; every
// string from the document is made printable first, since some of it (user,
// database, application_name) is chosen by any client of the proxy.

#include "conf/config.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace patroxy::app::cli {

/// Where /status.json is asked for.
struct stats_target {
    std::string host;
    std::uint16_t port = 7000;
    std::string path = "/status.json";
    std::optional<conf::basic_auth> auth;
    /// For messages: "http://127.0.0.1:7000/status.json".
    std::string url() const;
};

/// The configuration's stats port; a wildcard bind (0.0.0.0, ::) is asked on loopback.
stats_target target_from_config(const conf::config& cfg);
/// "http://host[:port][/path]" (port 7000, path /status.json by default; the stats port speaks no TLS); nullopt and `why` otherwise.
std::optional<stats_target> target_from_url(const std::string& url, std::string& why);

/// One GET: the body of a 200 answer, else `error` says what went wrong
/// (connect refused, timed out, "HTTP 401 Unauthorized", ...).
struct fetched {
    std::string error;
    std::string body;
};
fetched fetch(const stats_target& where, std::chrono::milliseconds timeout);

/// `patroxy status` as text, and whether a leader is routed (the exit status).
struct rendered {
    std::string text;
    bool leader_routed = false;
};
rendered render_status(const nlohmann::json& doc);
/// `patroxy sessions` as text.
std::string render_sessions(const nlohmann::json& doc);

/// Exit codes of `status` and `sessions` (patroxy(8)).
inline constexpr int exit_leader = 0;
inline constexpr int exit_no_leader = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_unreachable = 3;

/// The whole command: `args` are what follows "status" or "sessions".
int run(const std::string& command, const std::vector<std::string>& args);

}  // namespace patroxy::app::cli
