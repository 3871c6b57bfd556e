#pragma once
// `patroxy import haproxy.cfg [keepalived.conf]`: the patroxy.yml that does
// what the seed's HAProxy + keepalived pair did. The conversion is pure (text
// in, YAML text and notes out), so it is tested on sample files without a
// network; run() adds the files and validates the result as --check-config
// does.
//
// What is carried over:
//   haproxy.cfg    global maxconn, nbthread; defaults and listen/frontend/backend
//                  `timeout` (connect, client, server, queue, check), retries,
//                  maxconn; `option httpchk [METHOD] URI` to Patroni (/, /master,
//                  /primary, /leader, /read-write: a write listener; /replica,
//                  /read-only: a read listener; ?lag= as health.max_lag);
//                  `server NAME ADDR:PORT check port N [addr A]` as members;
//                  `default-server`/server inter, fastinter, fall, rise;
//                  on-marked-down shutdown-sessions (what patroxy always does);
//                  balance roundrobin; the `stats` listener (bind, auth).
//   keepalived     vrrp_instance: interface, virtual_router_id, priority,
//                  advert_int, virtual_ipaddress, unicast_peer, nopreempt,
//                  preempt_delay, garp_master_repeat, track_script weight (from
//                  the instance or its vrrp_script).
// Everything else is named in a note, "file:line: not carried over: ...".

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patroxy::app::import {

/// One input file: its name (for notes and comments) and its text.
struct source {
    std::string name;
    std::string text;
};

struct result {
    std::string yaml;                ///< the configuration, with comments naming where each part came from
    std::vector<std::string> notes;  ///< "file:line: not carried over: ..." and other warnings, in file order
};

/// Converts; never throws on any input (what it cannot read becomes a note).
result convert(const source& haproxy, const std::optional<source>& keepalived);

/// The whole command: `args` are what follows "import". Exit 0 when the
/// result validates, 2 when it does not or an input cannot be read.
int run(const std::vector<std::string>& args);

}  // namespace patroxy::app::import
