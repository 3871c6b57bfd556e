// patroxy: one daemon in front of a Patroni cluster, replacing HAProxy + keepalived.

#include "app/cli.hpp"
#include "app/daemon.hpp"
#include "app/import.hpp"
#include "base/log.hpp"
#include "conf/loader.hpp"
#include "proxy/server.hpp"

#include <boost/program_options.hpp>

#include <sys/resource.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>

namespace po = boost::program_options;
using namespace patroxy;

namespace {

// What the configuration needs against what the process may open.
struct descriptor_check {
    conf::descriptor_budget budget;
    long hard = 0;
    std::string shortfall() const {
        if (hard >= budget.needed()) {
            return {};
        }
        return "the configuration needs " + std::to_string(budget.needed()) + " descriptors (" +
               std::to_string(budget.per_session) + " per session for " + std::to_string(budget.sessions) +
               " sessions, " + std::to_string(budget.reserved) +
               " reserved for listeners, health checks, the stats port and VRRP) but the limit is " +
               std::to_string(hard) + ": raise LimitNOFILE (ulimit -n) or lower maxconn";
    }
};

descriptor_check check_descriptors(const conf::config& cfg) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    const auto hard = lim.rlim_max == RLIM_INFINITY ? std::numeric_limits<long>::max() : static_cast<long>(lim.rlim_max);
    return {conf::descriptors_for(cfg, proxy::worker_count(cfg)), hard};
}

// Each session holds two descriptors; the default soft limit (1024) would cap
// patroxy near 500 sessions. Raise it to the hard limit, as HAProxy does, and
// say loudly when even that is short: then accepting pauses early, so that
// client load can never take the descriptors of checks, stats and VRRP.
void raise_descriptor_limit(const conf::config& cfg) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    const auto check = check_descriptors(cfg);
    if (const auto shortfall = check.shortfall(); !shortfall.empty()) {
        PATROXY_LOG(error, "main") << "descriptor limit too low: " << shortfall << "; accepting pauses at "
                                   << check.budget.sessions_within(check.hard) << " connections instead";
    } else {
        PATROXY_LOG(info, "main") << "descriptor limit " << check.hard << " (" << check.budget.needed()
                                  << " needed for " << check.budget.sessions << " connections)";
    }
}

}  // namespace

int main(int argc, char** argv) {
    // Commands an operator runs beside the daemon (patroxy(8)).
    if (argc >= 2) {
        const std::string command = argv[1];
        const std::vector<std::string> rest(argv + 2, argv + argc);
        if (command == "status" || command == "sessions") {
            return app::cli::run(command, rest);
        }
        if (command == "import") {
            return app::import::run(rest);
        }
    }
    po::options_description opts("Usage: patroxy [options]\n"
                                 "       patroxy status|sessions [-c FILE] [--url URL] [--user NAME:PASSWORD] [--json]\n"
                                 "       patroxy import haproxy.cfg [keepalived.conf] [-o patroxy.yml]\n\nOptions");
    opts.add_options()
        ("help,h", "show this help and exit")
        ("version,V", "show the version and exit")
        ("config,c", po::value<std::string>()->default_value("/etc/patroxy/patroxy.yml"), "configuration file")
        ("check-config", po::value<std::string>()->value_name("FILE"),
         "validate FILE and exit: 0 when valid, 2 with every problem listed when not")
        ("upgrade", "take the listening sockets, the VIP and the members' state from the patroxy running at the "
                    "configuration's control_socket, which then drains and exits (a binary upgrade; SIGUSR2 to "
                    "the running one does this with its own binary path)");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "patroxy: " << e.what() << "\n" << opts << '\n';
        return 2;
    }
    if (vm.count("help") != 0) {
        std::cout << opts
                  << "\nSignals: SIGTERM/SIGINT stop accepting and drain sessions at idle points (a second one"
                     " closes them); SIGHUP reloads the configuration (an invalid file changes nothing); SIGUSR2"
                     " starts the binary again with --upgrade.\n";
        return 0;
    }
    if (vm.count("version") != 0) {
        std::cout << "patroxy " PATROXY_VERSION "\n";
        return 0;
    }
    if (vm.count("check-config") != 0) {
        const auto path = vm["check-config"].as<std::string>();
        try {
            const auto cfg = conf::load_file(path);
            if (const auto shortfall = check_descriptors(cfg).shortfall(); !shortfall.empty()) {
                std::cerr << path << ": " << shortfall << '\n';
                return 2;
            }
            std::cout << path << ": valid (" << cfg.members.size() << " members, " << cfg.listeners.size()
                      << " listeners)\n";
            return 0;
        } catch (const conf::config_error& e) {
            std::cerr << e.what();
            return 2;
        }
    }
    const auto path = vm["config"].as<std::string>();
    conf::config cfg;
    try {
        cfg = conf::load_file(path);
    } catch (const conf::config_error& e) {
        std::cerr << e.what();
        return 2;
    }
    cfg.generation = 1;
    raise_descriptor_limit(cfg);
    app::daemon_options options;
    options.upgrade = vm.count("upgrade") != 0;
    // Resolved now: after a package upgrade /proc/self/exe names the old,
    // deleted file. A bare name (started through PATH) is no path at all
    // (realpath would look in the working directory): /proc/self/exe's
    // target then, as it is now.
    char exe[PATH_MAX];
    const bool has_path = std::strchr(argv[0], '/') != nullptr;
    if (has_path && ::realpath(argv[0], exe) != nullptr) {
        options.executable = exe;
    } else if (::realpath("/proc/self/exe", exe) != nullptr) {
        options.executable = exe;
    } else {
        options.executable = argv[0];
    }
    try {
        app::daemon d(std::make_shared<const conf::config>(std::move(cfg)), options);
        const int code = d.run();
        log::flush();
        return code;
    } catch (const std::exception& e) {
        PATROXY_LOG(error, "main") << e.what();
        log::flush();
        return 1;
    }
}
