// The load side of the proxy-only benchmarks (workloads 5 and 6), in plain
// blocking sockets, one thread per connection stream:
//   connect: new session after new session (startup -> ReadyForQuery -> Terminate), sessions/s
//   relay:   N sessions each sending chunks the stand-in echoes back, MB/s (both directions)
//   idle:    open N sessions (or until 3 in a row fail), finish their startups, print "ready", hold until stdin closes

#include <boost/program_options.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace po = boost::program_options;
using clock_type = std::chrono::steady_clock;

namespace {

std::vector<std::uint8_t> startup_packet() {
    std::vector<std::uint8_t> body{0, 3, 0, 0};  // protocol 3.0
    for (const char* s : {"user", "bench", "database", "bench", ""}) {
        body.insert(body.end(), s, s + std::strlen(s) + 1);
    }
    const auto len = static_cast<std::uint32_t>(body.size() + 4);
    std::vector<std::uint8_t> out{static_cast<std::uint8_t>(len >> 24), static_cast<std::uint8_t>(len >> 16),
                                  static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)};
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

const std::vector<std::uint8_t> startup = startup_packet();
const std::uint8_t terminate[] = {'X', 0, 0, 0, 4};

// Connects and completes a startup (reads until ReadyForQuery); -1 on failure.
int open_session(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Bounded both ways: a proxy that stops accepting leaves a connect in the
    // backlog (SYN retries for two minutes) and a startup with no answer.
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 ||
        ::send(fd, startup.data(), startup.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(startup.size())) {
        ::close(fd);
        return -1;
    }
    // The stand-in's answer ends with ReadyForQuery: 'Z' 0 0 0 5 'I'.
    std::uint8_t buf[512];
    std::size_t have = 0;
    while (true) {
        const auto n = ::recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0) {
            ::close(fd);
            return -1;
        }
        have += static_cast<std::size_t>(n);
        if (have >= 6 && buf[have - 6] == 'Z' && buf[have - 1] == 'I') {
            return fd;
        }
        if (have == sizeof buf) {
            ::close(fd);
            return -1;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode;
    std::uint16_t port = 0;
    double seconds = 5;
    int threads = 4;
    int count = 1000;
    std::size_t chunk = 16384;
    po::options_description opts("patroxy_bench_client connect|relay|idle");
    opts.add_options()("help", "this text")("mode", po::value(&mode)->required(), "connect, relay or idle")(
        "port", po::value(&port)->required(), "127.0.0.1 port")("seconds", po::value(&seconds), "run time")(
        "threads", po::value(&threads), "parallel streams (connect, relay)")(
        "count", po::value(&count), "sessions to hold (idle)")("chunk", po::value(&chunk), "bytes per write (relay)");
    po::positional_options_description pos;
    pos.add("mode", 1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
        if (vm.count("help")) {
            std::cout << opts;
            return 0;
        }
        po::notify(vm);
    } catch (const std::exception& e) {
        std::cerr << "patroxy_bench_client: " << e.what() << "\n" << opts;
        return 2;
    }
    const auto until = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
    std::atomic<std::uint64_t> done{0};
    std::atomic<std::uint64_t> errors{0};
    std::vector<std::thread> pool;
    const auto t0 = clock_type::now();
    if (mode == "connect") {
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&] {
                while (clock_type::now() < until) {
                    const int fd = open_session(port);
                    if (fd < 0) {
                        ++errors;
                        continue;
                    }
                    ::send(fd, terminate, sizeof terminate, MSG_NOSIGNAL);
                    ::close(fd);
                    ++done;
                }
            });
        }
    } else if (mode == "relay") {
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&] {
                const int fd = open_session(port);
                if (fd < 0) {
                    ++errors;
                    return;
                }
                std::vector<std::uint8_t> out(chunk, 'x');
                std::vector<std::uint8_t> in(chunk);
                while (clock_type::now() < until) {
                    if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
                        ++errors;
                        break;
                    }
                    std::size_t got = 0;
                    while (got < chunk) {
                        const auto n = ::recv(fd, in.data(), chunk - got, 0);
                        if (n <= 0) {
                            ++errors;
                            ::close(fd);
                            return;
                        }
                        got += static_cast<std::size_t>(n);
                    }
                    done += 2 * chunk;
                }
                ::close(fd);
            });
        }
    } else if (mode == "idle") {
        // Until `count`, or until the proxy stops taking sessions (3 failures
        // in a row: at its limit each further try would wait its 5 s).
        std::vector<int> fds;
        for (int i = 0, in_a_row = 0; i < count && in_a_row < 3; ++i) {
            const int fd = open_session(port);
            if (fd < 0) {
                ++errors;
                ++in_a_row;
            } else {
                fds.push_back(fd);
                in_a_row = 0;
            }
        }
        std::cout << "ready " << fds.size() << " errors " << errors.load() << std::endl;
        std::string line;
        std::getline(std::cin, line);  // hold until told
        for (const int fd : fds) {
            ::close(fd);
        }
        return errors.load() == 0 ? 0 : 1;
    } else {
        std::cerr << "patroxy_bench_client: unknown mode '" << mode << "'\n";
        return 2;
    }
    for (auto& t : pool) {
        t.join();
    }
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (mode == "connect") {
        std::cout << static_cast<double>(done.load()) / secs << " sessions/s " << errors.load() << " errors\n";
    } else {
        std::cout << static_cast<double>(done.load()) / secs / 1e6 << " MB/s " << errors.load() << " errors\n";
    }
    return 0;
}
