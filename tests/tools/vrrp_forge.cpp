// Sends VRRPv3 adverts that a test chooses, forged or not: wrong TTL, wrong
// VRID, a broken checksum, from a host that is no configured peer. For the
// namespace tests only; it runs inside the client's namespace.

#include "vip/kernel.hpp"
#include "vip/vrrp_packet.hpp"

#include <boost/program_options.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

namespace po = boost::program_options;
using namespace patroxy::vip;

int main(int argc, char** argv) {
    std::string interface;
    std::string dst_text;
    std::string vip_text;
    int vrid = 51;
    int priority = 254;
    int ttl = 255;
    int count = 3;
    int interval_cs = 100;
    po::options_description opts("vrrp_forge: send chosen VRRPv3 adverts");
    opts.add_options()("help", "this text")
        ("interface", po::value(&interface)->required(), "send from this interface")
        ("dst", po::value(&dst_text)->default_value("224.0.0.18"), "destination")
        ("vip", po::value(&vip_text)->required(), "the address to announce")
        ("vrid", po::value(&vrid), "virtual router id")
        ("priority", po::value(&priority), "priority")
        ("ttl", po::value(&ttl), "IP TTL")
        ("interval-cs", po::value(&interval_cs), "advertised interval, centiseconds")
        ("count", po::value(&count), "adverts to send, 10 ms apart")
        ("bad-checksum", "flip the checksum");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        if (vm.count("help")) {
            std::cout << opts;
            return 0;
        }
        po::notify(vm);
    } catch (const std::exception& e) {
        std::cerr << "vrrp_forge: " << e.what() << "\n" << opts;
        return 2;
    }
    const auto dst = parse_ipv4(dst_text);
    const auto vip = parse_ipv4(vip_text);
    std::string why;
    const auto link = find_interface(interface, 0, why);
    if (!dst || !vip || !link) {
        std::cerr << "vrrp_forge: " << (link ? "bad address" : why) << "\n";
        return 2;
    }
    advert a;
    a.vrid = static_cast<std::uint8_t>(vrid);
    a.priority = static_cast<std::uint8_t>(priority);
    a.max_advert_int_cs = static_cast<std::uint16_t>(interval_cs);
    a.addresses = {*vip};
    auto bytes = encode_advert(a, link->primary, *dst);
    if (vm.count("bad-checksum")) {
        bytes[6] ^= 0x5a;
    }
    const int fd = ::socket(AF_INET, SOCK_RAW, vrrp_protocol);
    if (fd < 0) {
        std::perror("vrrp_forge: raw socket");
        return 1;
    }
    ::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, interface.c_str(), static_cast<socklen_t>(interface.size()));
    ::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    ::setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(*dst);
    for (int i = 0; i < count; ++i) {
        if (::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
            std::perror("vrrp_forge: sendto");
            return 1;
        }
        ::usleep(10'000);
    }
    ::close(fd);
    return 0;
}
