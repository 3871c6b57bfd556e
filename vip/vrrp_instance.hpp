#pragma once
// One VRRP instance on the control thread: the raw sockets (IP protocol 112),
// the timers, the tracking of patroxy's own health and the probe of the
// master's patroxy, around the pure vrrp_machine. Without the capabilities,
// the interface or the sockets it needs, it stays off and says why; the proxy
// runs on either way.

#include "conf/config.hpp"
#include "vip/kernel.hpp"
#include "vip/vrrp_machine.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <map>
#include <set>
#include <string>

namespace patroxy::vip {

/// What the stats page shows about the VIP.
struct vip_status {
    bool running = false;
    std::string off_reason;            ///< why not running
    vrrp_state state = vrrp_state::initialize;
    std::string address;               ///< "10.0.0.100/24"
    std::string interface;
    int priority = 0;                  ///< configured
    int effective_priority = 0;        ///< after tracking
    std::string unhealthy_reason;      ///< why the priority is lowered, empty when healthy
    std::string master;                ///< the master we hear as backup, "" otherwise
    std::chrono::system_clock::time_point last_transition{};
    std::uint64_t transitions = 0;
    std::uint64_t adverts_sent = 0;
    std::uint64_t adverts_received = 0;
    std::map<std::string, std::uint64_t> dropped;   ///< by reason
};

class vrrp_instance {
public:
    /// Empty when patroxy is healthy, else why not (lowers the priority by the weight).
    using health_check = std::function<std::string()>;

    vrrp_instance(boost::asio::io_context& ioc, const conf::vip_config& cfg, std::uint16_t stats_port,
                  health_check health);
    ~vrrp_instance();
    vrrp_instance(const vrrp_instance&) = delete;
    vrrp_instance& operator=(const vrrp_instance&) = delete;

    /// Opens the sockets and starts as backup (or FAULT); never throws.
    void start();
    /// A master resigns (priority 0 advert) and removes the VIP; sockets close.
    void shutdown();
    vip_status status() const;

private:
    void off(std::string why);
    bool open_sockets(std::string& why);
    void apply(const vrrp_actions& actions, std::string_view cause);
    void send_advert(int priority);
    void next_garp();
    void arm_timer();
    void wait_for_adverts();
    void receive_adverts();
    void on_packet(const std::uint8_t* data, std::size_t n);
    void track_health();
    /// The configured priority, less the weight while unhealthy (0 with weight 0).
    int priority_for(const std::string& unhealthy_reason) const;
    void probe_master();
    void drop(std::string_view reason) { ++status_.dropped[std::string(reason)]; }

    boost::asio::io_context& ioc_;
    const conf::vip_config& cfg_;
    std::uint16_t stats_port_;
    health_check health_;
    vrrp_machine machine_;
    std::uint32_t vip_ = 0;
    interface_info link_;
    std::vector<std::uint32_t> peers_;
    int send_fd_ = -1;
    boost::asio::posix::stream_descriptor receiver_;
    boost::asio::steady_timer timer_;
    boost::asio::steady_timer garp_timer_;
    boost::asio::steady_timer health_timer_;
    boost::asio::steady_timer probe_timer_;
    boost::asio::ip::tcp::socket probe_;
    bool probing_ = false;
    std::set<std::uint32_t> peers_with_patroxy_;   ///< masters whose stats port answered once
    int garps_left_ = 0;
    bool stopped_ = false;
    bool send_failing_ = false;   ///< adverts fail to go out (link down): log once
    vip_status status_;
};

}  // namespace patroxy::vip
