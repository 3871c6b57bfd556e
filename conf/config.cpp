#include "conf/config.hpp"

namespace patroxy::conf {

std::vector<listener_config> config::default_listeners(std::size_t member_count) {
    std::vector<std::size_t> all(member_count);
    for (std::size_t i = 0; i < member_count; ++i) {
        all[i] = i;
    }
    listener_config write{.name = "master", .role = listener_role::write, .port = 5000, .members = all};
    listener_config read{.name = "replicas", .role = listener_role::read, .port = 5001, .members = all};
    return {write, read};
}

std::string_view to_string(listener_role r) {
    return r == listener_role::write ? "write" : "read";
}

std::string_view to_string(log_level l) {
    switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    }
    return "info";
}

}  // namespace patroxy::conf
