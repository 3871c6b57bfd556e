#pragma once
// What a worker routes by: one configuration snapshot and one topology
// snapshot per cluster, joined on the control thread with everything a
// session needs resolved (each listener's book and cluster, each member's
// book and address), so the worker looks nothing up by name. Immutable once
// built; a new one is posted to every worker when the configuration or the
// routing of any cluster changes.

#include "conf/config.hpp"
#include "health/topology.hpp"
#include "proxy/books.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <vector>

namespace patroxy::proxy {

/// One cluster's members as routing sees them.
struct cluster_route {
    std::string label;
    health::topology_ptr topology;
    std::vector<boost::asio::ip::tcp::endpoint> endpoints;   ///< aligned with topology->members
};

/// One listener of the configuration, with its counters.
struct listener_route {
    const conf::listener_config* cfg = nullptr;   ///< inside routing::config
    listener_book* book = nullptr;
    const cluster_route* cluster = nullptr;       ///< inside routing::clusters
    std::vector<member_book*> members;            ///< aligned with cluster->topology->members
    const health::topology& topology() const { return *cluster->topology; }
};

struct routing {
    conf::config_ptr config;
    std::vector<cluster_route> clusters;                     ///< aligned with the config's clusters
    std::vector<listener_route> listeners;                   ///< aligned with config->listeners

    /// The route of the listener whose book is `book` in this snapshot;
    /// nullptr once a reload removed that listener.
    const listener_route* route_of(const listener_book* book) const;
};

using routing_ptr = std::shared_ptr<const routing>;

/// Joins `cfg` and each cluster's topology (aligned with its clusters; a
/// missing one routes nothing) on the control thread: it may create books.
routing_ptr make_routing(conf::config_ptr cfg, const std::vector<health::topology_ptr>& topologies,
                         book_registry& books);

}  // namespace patroxy::proxy
