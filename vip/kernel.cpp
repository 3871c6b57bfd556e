#include "vip/kernel.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/if_ether.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace patroxy::vip {
namespace {

// Closes a descriptor on every path out.
struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

void add_attribute(nlmsghdr& h, std::size_t room, unsigned short type, const void* data, std::size_t len) {
    auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&h) + NLMSG_ALIGN(h.nlmsg_len));
    const auto size = RTA_LENGTH(len);
    if (NLMSG_ALIGN(h.nlmsg_len) + RTA_ALIGN(size) > room) {
        return;  // cannot happen with the fixed request below
    }
    rta->rta_type = type;
    rta->rta_len = static_cast<unsigned short>(size);
    std::memcpy(RTA_DATA(rta), data, len);
    h.nlmsg_len = static_cast<std::uint32_t>(NLMSG_ALIGN(h.nlmsg_len) + RTA_ALIGN(size));
}

// One address request and the kernel's acknowledgement.
bool change_address(bool add, int ifindex, std::uint32_t address, int prefix, std::string& why) {
    struct {
        nlmsghdr header;
        ifaddrmsg body;
        char attributes[64];
    } request{};
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
    request.header.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    request.header.nlmsg_seq = 1;
    request.body.ifa_family = AF_INET;
    request.body.ifa_prefixlen = static_cast<unsigned char>(prefix);
    request.body.ifa_scope = RT_SCOPE_UNIVERSE;
    request.body.ifa_index = static_cast<unsigned>(ifindex);
    const std::uint32_t net_order = htonl(address);
    add_attribute(request.header, sizeof request, IFA_LOCAL, &net_order, sizeof net_order);
    add_attribute(request.header, sizeof request, IFA_ADDRESS, &net_order, sizeof net_order);

    fd_guard s{::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)};
    if (s.fd < 0) {
        why = errno_text("netlink socket");
        return false;
    }
    timeval tv{1, 0};  // the kernel answers at once; never hang the control thread
    ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(s.fd, &request, request.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
        why = errno_text("netlink send");
        return false;
    }
    char answer[512];
    const auto n = ::recv(s.fd, answer, sizeof answer, 0);
    if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr)))) {
        why = n < 0 ? errno_text("netlink receive") : "netlink: short answer";
        return false;
    }
    const auto* h = reinterpret_cast<const nlmsghdr*>(answer);
    if (h->nlmsg_type != NLMSG_ERROR) {
        why = "netlink: unexpected answer";
        return false;
    }
    const int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
    if (error == 0 || (add && error == EEXIST) || (!add && error == EADDRNOTAVAIL)) {
        return true;
    }
    why = std::string(add ? "adding " : "deleting ") + ipv4_text(address) + "/" + std::to_string(prefix) + ": " +
          std::strerror(error);
    return false;
}

}  // namespace

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string ipv4_text(std::uint32_t host_order) {
    in_addr a{htonl(host_order)};
    char buf[INET_ADDRSTRLEN];
    return ::inet_ntop(AF_INET, &a, buf, sizeof buf) ? buf : "?";
}

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
    in_addr a{};
    if (::inet_pton(AF_INET, text.c_str(), &a) != 1) {
        return std::nullopt;
    }
    return ntohl(a.s_addr);
}

std::optional<interface_info> find_interface(const std::string& name, std::uint32_t vip, std::string& why) {
    interface_info out;
    out.name = name;
    out.index = static_cast<int>(::if_nametoindex(name.c_str()));
    if (out.index == 0) {
        why = "interface '" + name + "' does not exist";
        return std::nullopt;
    }
    ifaddrs* all = nullptr;
    if (::getifaddrs(&all) != 0) {
        why = errno_text("getifaddrs");
        return std::nullopt;
    }
    for (auto* a = all; a; a = a->ifa_next) {
        if (a->ifa_addr && a->ifa_addr->sa_family == AF_INET && name == a->ifa_name) {
            const auto addr = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
            if (addr != vip) {
                out.primary = addr;
                break;
            }
        }
    }
    ::freeifaddrs(all);
    if (out.primary == 0) {
        why = "interface '" + name + "' has no IPv4 address of its own to send adverts from";
        return std::nullopt;
    }
    fd_guard s{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    ifreq req{};
    std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (s.fd < 0 || ::ioctl(s.fd, SIOCGIFHWADDR, &req) != 0) {
        why = errno_text("reading the interface's MAC address");
        return std::nullopt;
    }
    std::memcpy(out.mac.data(), req.ifr_hwaddr.sa_data, out.mac.size());
    return out;
}

bool has_address(const std::string& interface, std::uint32_t address) {
    ifaddrs* all = nullptr;
    if (::getifaddrs(&all) != 0) {
        return false;
    }
    bool found = false;
    for (auto* a = all; a && !found; a = a->ifa_next) {
        found = a->ifa_addr && a->ifa_addr->sa_family == AF_INET && interface == a->ifa_name &&
                ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr) == address;
    }
    ::freeifaddrs(all);
    return found;
}

bool add_address(int ifindex, std::uint32_t address, int prefix, std::string& why) {
    return change_address(true, ifindex, address, prefix, why);
}

bool delete_address(int ifindex, std::uint32_t address, int prefix, std::string& why) {
    return change_address(false, ifindex, address, prefix, why);
}

bool send_gratuitous_arp(const interface_info& i, std::uint32_t address, std::string& why) {
    fd_guard s{::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP))};
    if (s.fd < 0) {
        why = errno_text("ARP socket");
        return false;
    }
    // A request for our own address (sender = target = the VIP): every host
    // on the segment updates its cache, none answers.
    ether_arp arp{};
    arp.arp_hrd = htons(ARPHRD_ETHER);
    arp.arp_pro = htons(ETH_P_IP);
    arp.arp_hln = 6;
    arp.arp_pln = 4;
    arp.arp_op = htons(ARPOP_REQUEST);
    const std::uint32_t net_order = htonl(address);
    std::memcpy(arp.arp_sha, i.mac.data(), 6);
    std::memcpy(arp.arp_spa, &net_order, 4);
    std::memset(arp.arp_tha, 0xff, 6);
    std::memcpy(arp.arp_tpa, &net_order, 4);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = i.index;
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    if (::sendto(s.fd, &arp, sizeof arp, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
        why = errno_text("sending a gratuitous ARP");
        return false;
    }
    return true;
}

bool interface_up(const std::string& name, std::string& why) {
    fd_guard s{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    ifreq req{};
    std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (s.fd < 0 || ::ioctl(s.fd, SIOCGIFFLAGS, &req) != 0) {
        why = errno_text(("reading the flags of interface '" + name + "'").c_str());
        return false;
    }
    if ((req.ifr_flags & IFF_UP) == 0) {
        why = "interface '" + name + "' is down";
        return false;
    }
    if ((req.ifr_flags & IFF_RUNNING) == 0) {
        why = "interface '" + name + "' has no carrier";
        return false;
    }
    return true;
}

int open_link_watch(std::string& why) {
    const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0) {
        why = errno_text("netlink socket for link events");
        return -1;
    }
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    local.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        why = errno_text("subscribing to link events");
        ::close(fd);
        return -1;
    }
    return fd;
}

std::string missing_capabilities() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0) {
        return errno_text("capget");
    }
    std::string missing;
    for (const auto& [cap, name] : {std::pair{CAP_NET_RAW, "CAP_NET_RAW"}, std::pair{CAP_NET_ADMIN, "CAP_NET_ADMIN"}}) {
        if ((data[cap / 32].effective & (1u << (cap % 32))) == 0) {
            missing += missing.empty() ? name : std::string(" and ") + name;
        }
    }
    return missing.empty() ? "" : "needs " + missing;
}

}  // namespace patroxy::vip
