#pragma once
// The kernel side of the VIP, thin and synchronous (each call is one local
// syscall round trip): find the interface, add and delete the address over
// rtnetlink, send gratuitous ARPs, check capabilities. Errors come back as
// text for the log and the stats page; nothing here throws.

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace patroxy::vip {

struct interface_info {
    std::string name;
    int index = 0;
    std::array<std::uint8_t, 6> mac{};
    std::uint32_t primary = 0;   ///< its first IPv4 address that is not the VIP (host order): adverts' source
};

/// The interface by name, with a primary IPv4 address other than `vip`.
std::optional<interface_info> find_interface(const std::string& name, std::uint32_t vip, std::string& why);

/// Whether `address` (host order) is on the interface now.
bool has_address(const std::string& interface, std::uint32_t address);

/// RTM_NEWADDR / RTM_DELADDR. Adding a present address or deleting an absent
/// one succeeds (idempotent).
bool add_address(int ifindex, std::uint32_t address, int prefix, std::string& why);
bool delete_address(int ifindex, std::uint32_t address, int prefix, std::string& why);

/// One gratuitous ARP request for `address` from the interface's MAC, broadcast.
bool send_gratuitous_arp(const interface_info& i, std::uint32_t address, std::string& why);

/// Whether the interface is administratively up and has carrier (IFF_UP and
/// IFF_RUNNING); `why` says which is missing.
bool interface_up(const std::string& name, std::string& why);

/// A netlink socket subscribed to link and IPv4 address changes
/// (RTMGRP_LINK, RTMGRP_IPV4_IFADDR), non-blocking; -1 with `why` on failure.
/// Whatever arrives only says "look again": the interface is re-read by name.
int open_link_watch(std::string& why);

/// Empty when the process may open raw sockets and change addresses, else
/// which capability is missing.
std::string missing_capabilities();

std::string ipv4_text(std::uint32_t host_order);
/// "what: strerror(errno)", for the log and the stats page.
std::string errno_text(const char* what);
std::optional<std::uint32_t> parse_ipv4(const std::string& text);

}  // namespace patroxy::vip
