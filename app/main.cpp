// patroxy: one daemon in front of a Patroni cluster, replacing HAProxy + keepalived.

#include "app/daemon.hpp"
#include "app/log.hpp"
#include "conf/loader.hpp"

#include <boost/program_options.hpp>

#include <sys/resource.h>

#include <iostream>

namespace po = boost::program_options;
using namespace patroxy;

namespace {

log::level to_log_level(conf::log_level l) {
    switch (l) {
    case conf::log_level::debug: return log::level::debug;
    case conf::log_level::info: return log::level::info;
    case conf::log_level::warn: return log::level::warn;
    case conf::log_level::error: return log::level::error;
    }
    return log::level::info;
}

// Each session holds two descriptors; the default soft limit (1024) would cap
// patroxy near 500 sessions. Raise it to the hard limit, as HAProxy does.
void raise_descriptor_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        PATROXY_LOG(info, "main") << "descriptor limit " << lim.rlim_cur << " (about " << lim.rlim_cur / 2
                                  << " sessions)";
    }
}

}  // namespace

int main(int argc, char** argv) {
    po::options_description opts("Usage: patroxy [options]\n\nOptions");
    opts.add_options()
        ("help,h", "show this help and exit")
        ("version,V", "show the version and exit")
        ("config,c", po::value<std::string>()->default_value("/etc/patroxy/patroxy.yml"), "configuration file")
        ("check-config", po::value<std::string>()->value_name("FILE"),
         "validate FILE and exit: 0 when valid, 2 with every problem listed when not");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "patroxy: " << e.what() << "\n" << opts << '\n';
        return 2;
    }
    if (vm.count("help") != 0) {
        std::cout << opts << "\nSignals: SIGTERM/SIGINT stop accepting and drain sessions (a second one closes them).\n";
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
    log::set_level(to_log_level(cfg.log.level));
    raise_descriptor_limit();
    try {
        app::daemon d(std::move(cfg));
        return d.run();
    } catch (const std::exception& e) {
        PATROXY_LOG(error, "main") << e.what();
        return 1;
    }
}
