// Several Patroni clusters behind one patroxy (`clusters:`): each cluster's
// monitor, leader and listeners apart, one page, JSON and metrics with a
// `cluster` label, and a reload that removes a cluster drains only its
// sessions. Stand-in members whose names collide across the clusters (both
// have a pg0), as Patroni's do.
#include "support/http_get.hpp"
#include "support/proxy_harness.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

using namespace patroxy;
using namespace patroxy::testing;
using namespace std::chrono_literals;

namespace {

// Members of one cluster: pg0, pg1, ... in the file; their stand-ins answer as "<prefix>-pgN".
struct stand_in_cluster {
    std::vector<std::unique_ptr<fake_member>> members;
    stand_in_cluster(const std::string& prefix, std::initializer_list<std::string> roles) {
        int i = 0;
        for (const auto& r : roles) {
            members.push_back(std::make_unique<fake_member>(prefix + "-pg" + std::to_string(i++), r));
        }
    }
    std::vector<conf::member_config> config() {
        std::vector<conf::member_config> out;
        for (std::size_t i = 0; i < members.size(); ++i) {
            conf::member_config m;
            m.name = "pg" + std::to_string(i);
            m.host = m.api.host = "127.0.0.1";
            m.port = members[i]->pg->port();
            m.api.port = members[i]->api.port();
            m.api.url = members[i]->api.url();
            out.push_back(m);
        }
        return out;
    }
};

conf::listener_config listener(const std::string& name, const std::string& cluster, conf::listener_role role) {
    conf::listener_config l;
    l.name = name;
    l.cluster = cluster;
    l.role = role;
    l.bind = "127.0.0.1";
    l.port = free_port();
    return l;
}

// Billing (the first cluster, at the top of the config) and crm.
conf::config two_clusters(stand_in_cluster& billing, stand_in_cluster& crm) {
    std::vector<std::unique_ptr<fake_member>> none;
    auto cfg = config_for(none);
    cfg.cluster_name = "billing";
    cfg.scope = "billing-pg";
    cfg.members = billing.config();
    conf::cluster_config c;
    c.name = "crm";
    c.scope = "crm-pg";
    c.members = crm.config();
    c.health = cfg.health;
    cfg.more_clusters.push_back(c);
    cfg.listeners = {listener("billing-rw", "billing", conf::listener_role::write),
                     listener("billing-ro", "billing", conf::listener_role::read),
                     listener("crm-rw", "crm", conf::listener_role::write),
                     listener("crm-ro", "crm", conf::listener_role::read)};
    cfg.stats.enabled = true;
    cfg.stats.bind = "127.0.0.1";
    cfg.stats.port = free_port();
    return cfg;
}

// Billing and crm both route a leader.
bool both_lead(proxy_under_test& p) {
    return eventually([&] {
        const auto b = p.daemon().topology("billing");
        const auto c = p.daemon().topology("crm");
        return b && c && b->leader && c->leader;
    });
}

std::string server_of(std::uint16_t port) {
    raw_client c(port);
    const auto r = c.startup();
    return r.ready ? r.server_name : "refused " + r.sqlstate;
}

}  // namespace

TEST_CASE("two clusters behind one patroxy: each listener routes within its cluster, the page and metrics label them", "[proxy][component]") {
    stand_in_cluster billing("billing", {"master", "replica"});
    stand_in_cluster crm("crm", {"replica", "master", "replica"});
    const auto cfg = two_clusters(billing, crm);
    proxy_under_test p(cfg);
    REQUIRE(eventually([&] {
        const auto b = p.daemon().topology("billing");
        const auto c = p.daemon().topology("crm");
        return b && c && b->leader == 0u && c->leader == 1u && c->readable.size() == 2;
    }));
    CHECK(server_of(cfg.listeners[0].port) == "billing-pg0");
    CHECK(server_of(cfg.listeners[1].port) == "billing-pg1");
    CHECK(server_of(cfg.listeners[2].port) == "crm-pg1");
    for (int i = 0; i < 4; ++i) {
        const auto on = server_of(cfg.listeners[3].port);
        CHECK((on == "crm-pg0" || on == "crm-pg2"));
    }
    // Member ids are the cluster's own: the same name in two clusters is two members.
    const auto b = p.daemon().topology("billing");
    const auto c = p.daemon().topology("crm");
    CHECK(b->members[0].id != c->members[0].id);

    const auto page = http_get(cfg.stats.port, "/status.json");
    REQUIRE(page.status == 200);
    const auto j = nlohmann::json::parse(page.body);
    REQUIRE(j["clusters"].size() == 2);
    CHECK(j["clusters"][0]["name"] == "billing");
    CHECK(j["clusters"][0]["leader"] == "pg0");
    CHECK(j["clusters"][1]["name"] == "crm");
    CHECK(j["clusters"][1]["scope"] == "crm-pg");
    CHECK(j["clusters"][1]["leader"] == "pg1");
    CHECK(j["cluster"]["name"] == "billing");  // the first, where a single-cluster page has it
    CHECK(j["members"].size() == 5);
    std::size_t crm_members = 0;
    for (const auto& m : j["members"]) {
        crm_members += m["cluster"] == "crm" ? 1 : 0;
        if (m["cluster"] == "crm") {
            // Only its cluster's listeners are its columns.
            CHECK(m["listeners"].contains("crm-rw"));
            CHECK_FALSE(m["listeners"].contains("billing-rw"));
        }
    }
    CHECK(crm_members == 3);
    CHECK(j["listeners"][2]["cluster"] == "crm");

    const auto metrics = http_get(cfg.stats.port, "/metrics").body;
    CHECK(metrics.find("patroxy_member_leader{cluster=\"crm\",member=\"pg1\"} 1") != std::string::npos);
    CHECK(metrics.find("patroxy_member_leader{cluster=\"billing\",member=\"pg0\"} 1") != std::string::npos);
    CHECK(metrics.find("patroxy_cluster_has_leader{cluster=\"crm\",scope=\"crm-pg\"} 1") != std::string::npos);
    CHECK(metrics.find("patroxy_listener_sessions_total{cluster=\"crm\",listener=\"crm-rw\",role=\"write\"} 1") !=
          std::string::npos);
    const auto html = http_get(cfg.stats.port, "/").body;
    CHECK(html.find("id=\"members-crm\"") != std::string::npos);
    CHECK(html.find("id=\"members\"") != std::string::npos);
    CHECK(http_get(cfg.stats.port, "/health").body == "OK: writes go to billing: pg0, crm: pg1\n");

    // One cluster's failover moves only its own write port.
    crm.members[1]->api.set_body(fake_patroni::answer("replica"));
    crm.members[2]->api.set_body(fake_patroni::answer("master"));
    REQUIRE(eventually([&] { return p.daemon().topology("crm")->leader == 2u; }));
    // The workers take the new topology a moment after the monitor built it:
    // three sessions in a row on crm-pg2.
    CHECK(eventually([&] {
        for (int i = 0; i < 3; ++i) {
            if (server_of(cfg.listeners[2].port) != "crm-pg2") {
                return false;
            }
        }
        return true;
    }, 2s));
    CHECK(server_of(cfg.listeners[0].port) == "billing-pg0");
    // A cluster without a leader: /health says so, the other's writes go on.
    crm.members[2]->api.set_body(fake_patroni::answer("replica"));
    REQUIRE(eventually([&] { return !p.daemon().topology("crm")->leader; }));
    CHECK(http_get(cfg.stats.port, "/health").status == 503);
    CHECK(server_of(cfg.listeners[0].port) == "billing-pg0");
}

TEST_CASE("a reload that removes a cluster drains its sessions and leaves the other cluster's alone", "[proxy][component]") {
    stand_in_cluster billing("billing", {"master"});
    stand_in_cluster crm("crm", {"master"});
    auto cfg = two_clusters(billing, crm);
    cfg.timeouts.drain = 2s;
    proxy_under_test p(cfg);
    REQUIRE(both_lead(p));
    raw_client on_billing(cfg.listeners[0].port);
    REQUIRE(on_billing.startup().server_name == "billing-pg0");
    raw_client on_crm(cfg.listeners[2].port, 6s);
    REQUIRE(on_crm.startup().server_name == "crm-pg0");

    auto next = p.config();
    next.more_clusters.clear();
    std::erase_if(next.listeners, [](const conf::listener_config& l) { return l.cluster == "crm"; });
    const auto r = p.reload(next);
    REQUIRE(r.applied);
    CHECK(p.daemon().topology("crm") == nullptr);
    // Idle: FATAL 57P01 naming the reason within the drain.
    const auto told = on_crm.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.message.find("a reload removed listener 'crm-rw'") != std::string::npos);
    CHECK(on_crm.closed_by_peer());
    // The other cluster's session is untouched and its port still routes.
    const packet ping{'x'};
    CHECK(on_billing.send(ping));
    CHECK(on_billing.read_byte() == std::uint8_t{'x'});
    CHECK(server_of(cfg.listeners[0].port) == "billing-pg0");
    // Added back: routed again.
    REQUIRE(p.reload(cfg).applied);
    REQUIRE(eventually([&] { const auto c = p.daemon().topology("crm"); return c && c->leader; }));
    CHECK(server_of(cfg.listeners[2].port) == "crm-pg0");
}

TEST_CASE("reloads under a stats scrape: a renamed cluster keeps its monitor and sessions, a listener moved to another cluster drains", "[proxy][component]") {
    stand_in_cluster billing("billing", {"master"});
    stand_in_cluster crm("crm", {"master"});
    auto cfg = two_clusters(billing, crm);
    cfg.timeouts.drain = 2s;
    cfg.listeners[3].fallback = {conf::listener_role::write};  // crm-ro: no replica, the leader then
    proxy_under_test p(cfg);
    REQUIRE(both_lead(p));
    // The stats thread reads the clusters while the control thread rebuilds them.
    std::atomic<bool> stop{false};
    std::atomic<int> scraped{0};
    std::thread scraper([&] {
        while (!stop) {
            scraped += http_get(cfg.stats.port, "/status.json").status == 200;
            scraped += http_get(cfg.stats.port, "/health").status > 0;
        }
    });
    raw_client on_crm(cfg.listeners[2].port, 6s);
    REQUIRE(on_crm.startup().server_name == "crm-pg0");
    const auto crm_id = p.daemon().topology("crm")->members[0].id;
    for (int i = 0; i < 10; ++i) {
        auto next = p.config();
        next.timeouts.client_idle = std::chrono::hours(1 + i);
        REQUIRE(p.reload(next).applied);
    }
    // Renamed (same scope): the same monitor, under its new label; its session stays.
    auto renamed = p.config();
    renamed.more_clusters[0].name = "sales";
    for (auto& l : renamed.listeners) {
        if (l.cluster == "crm") {
            l.cluster = "sales";
        }
    }
    REQUIRE(p.reload(renamed).applied);
    REQUIRE(p.daemon().topology("sales") != nullptr);
    CHECK(p.daemon().topology("sales")->members[0].id == crm_id);
    CHECK(p.daemon().topology("crm") == nullptr);
    CHECK(server_of(cfg.listeners[2].port) == "crm-pg0");
    const packet ping{'x'};
    CHECK(on_crm.send(ping));
    CHECK(on_crm.read_byte() == std::uint8_t{'x'});
    // crm-ro moved to billing: its session drains, and new ones go to billing.
    raw_client on_ro(cfg.listeners[3].port, 6s);
    REQUIRE(on_ro.startup().server_name == "crm-pg0");
    auto moved = p.config();
    moved.listeners[3].cluster = "billing";
    REQUIRE(p.reload(moved).applied);
    const auto told = on_ro.read_until_ready();
    CHECK(told.sqlstate == "57P01");
    CHECK(told.message.find("a reload moved listener 'crm-ro' to cluster 'billing'") != std::string::npos);
    stop = true;
    scraper.join();
    CHECK(scraped > 0);
    CHECK(on_crm.send(ping));
    CHECK(on_crm.read_byte() == std::uint8_t{'x'});
}
