#include "proxy/routing.hpp"

namespace patroxy::proxy {

const listener_route* routing::route_of(const listener_book* book) const {
    for (const auto& l : listeners) {
        if (l.book == book) {
            return &l;
        }
    }
    return nullptr;
}

routing_ptr make_routing(conf::config_ptr cfg, const std::vector<health::topology_ptr>& topologies,
                         book_registry& books) {
    static const auto nothing = std::make_shared<const health::topology>();
    auto r = std::make_shared<routing>();
    r->config = std::move(cfg);
    r->clusters.resize(r->config->cluster_count());
    for (std::size_t i = 0; i < r->clusters.size(); ++i) {
        auto& c = r->clusters[i];
        c.label = r->config->cluster_label(i);
        c.topology = i < topologies.size() && topologies[i] ? topologies[i] : nothing;
        for (const auto& m : c.topology->members) {
            boost::system::error_code ec;
            const auto address = boost::asio::ip::make_address(m.host, ec);
            c.endpoints.emplace_back(ec ? boost::asio::ip::address{} : address, m.port);  // a bad one fails its connects
        }
    }
    for (const auto& l : r->config->listeners) {
        listener_route route;
        route.cfg = &l;
        route.book = &books.listener(l.name);
        route.cluster = &r->clusters[r->config->cluster_of(l)];
        for (const auto& m : route.cluster->topology->members) {
            route.members.push_back(&books.member(*route.book, m.name));
        }
        r->listeners.push_back(std::move(route));
    }
    return r;
}

}  // namespace patroxy::proxy
