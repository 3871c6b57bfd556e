#pragma once
// One VRRP instance on the control thread: the raw sockets (IP protocol 112),
// the timers, the tracking of patroxy's own health and the probe of the
// master's patroxy, around the pure vrrp_machine. Without the capabilities it
// stays off and says why; without the interface, its address or the sockets
// at start it is in FAULT and starts once they are there. The proxy runs on
// either way.
//
// Faults while running: the interface down, gone or without an address
// (watched over rtnetlink, looked up again by name, so a recreated interface
// is picked up), or the VIP that cannot be added, put the instance in FAULT
// (a master resigns first); it returns to BACKUP when the link is back, or
// after a back-off for a failed add.

#include "conf/config.hpp"
#include "vip/kernel.hpp"
#include "vip/vrrp_machine.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <map>
#include <mutex>
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

/// What a running instance hands to the next process of a binary upgrade:
/// its state, and which VRRP instance and VIP that state is about.
struct vrrp_handover {
    vrrp_state state = vrrp_state::initialize;
    std::string interface;
    std::string address;               ///< the VIP, as configured ("10.0.0.100")
    int prefix = 0;
    int virtual_router_id = 0;
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

    /// Opens the sockets and starts as backup (or FAULT); never throws. With
    /// `adopt` from a previous process that was master, it is master at once
    /// and keeps the VIP that is already on the interface.
    void start(std::optional<vrrp_handover> adopt = std::nullopt);
    /// A master resigns (priority 0 advert) and removes the VIP; sockets close.
    void shutdown();
    /// A binary upgrade: stops without resigning (the VIP stays, no priority 0),
    /// after one last advert as master; the next process adopts the state.
    vrrp_handover hand_over();
    /// The next process's side: whether it can take `h` over as master: the
    /// previous one was master of the same instance (interface, address,
    /// prefix, VRID) and this one's VIP is enabled and can run there.
    bool adoptable(const vrrp_handover& h) const;
    /// After hand_over(), when the next process did not adopt: the VIP this
    /// host holds is let go as at a shutdown (a priority-0 advert on sockets
    /// opened for it, the address removed), so that a backup takes it.
    void release_handed_over(const vrrp_handover& h);
    /// New settings from a reload: priority, interval, tracking, probing live;
    /// a new address, interface, VRID or peers hand over cleanly (this host
    /// resigns and starts again with them).
    void reconfigure(const conf::vip_config& next);
    /// A copy of what the stats page shows; any thread.
    vip_status status() const;

private:
    void off(std::string why);
    bool open_sockets(std::string& why);
    void close_sockets();
    /// Removes the VIP from the interface if a run that was killed left it there.
    void remove_stale_address();
    void watch_links();
    void wait_for_link_events();
    /// Looks the interface up again by name; FAULT while it is gone or down,
    /// new sockets when it was recreated or its address changed.
    void check_link(std::string_view cause);
    /// Applies the priority that tracking and faults call for now.
    void refresh_priority();
    /// Why this host must not hold the VIP now, empty when nothing stops it.
    std::string fault() const;
    /// The copy status() returns, brought up to date.
    void publish();
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
    conf::vip_config cfg_;
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
    boost::asio::posix::stream_descriptor link_watch_;
    bool probing_ = false;
    std::set<std::uint32_t> peers_with_patroxy_;   ///< masters whose stats port answered once
    // The peer probe takes over only when refusals repeat and the master has
    // also been silent for 1.5 of its advert intervals: a REJECT rule on its
    // stats port (its adverts still arrive) never makes us take over.
    int refusals_ = 0;                             ///< from the current master since its last advert
    std::chrono::steady_clock::time_point last_master_advert_{};
    std::string link_fault_;                       ///< the interface is gone, down or has no address, or no sockets
    bool sockets_ok_ = false;                      ///< the VRRP sockets are open on link_ (else FAULT, reopened on link events)
    std::chrono::steady_clock::time_point sockets_retry_at_{};  ///< next look at the link while !sockets_ok_
    std::string add_fault_;                        ///< the VIP could not be added: until add_retry_at_
    std::chrono::steady_clock::time_point add_retry_at_{};
    std::chrono::milliseconds add_back_off_{1000};
    std::string unhealthy_;                        ///< the tracking verdict, as last seen
    int garps_left_ = 0;
    bool stopped_ = false;
    bool send_failing_ = false;   ///< adverts fail to go out (link down): log once
    vip_status status_;           ///< control thread's working copy
    mutable std::mutex published_mutex_;
    vip_status published_;        ///< what status() returns
};

}  // namespace patroxy::vip
