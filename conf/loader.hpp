#pragma once
// Reads and validates patroxy's YAML file. Every problem is collected in one
// pass and reported as "file:line:col: key.path: message" (1-based, like a
// compiler), so an operator fixes the file in one go.

#include "conf/config.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace patroxy::conf {

/// Thrown by the loaders when the file is unreadable or invalid; what() lists every problem.
class config_error : public std::runtime_error {
public:
    explicit config_error(std::vector<std::string> problems);
    /// One line per problem, in file order.
    const std::vector<std::string>& problems() const { return problems_; }

private:
    std::vector<std::string> problems_;
};

/// A Patroni REST URL ("http(s)://host[:port][/...]", host an IP or a name);
/// nullopt and `why` when it is not one.
std::optional<api_endpoint> parse_api_url(const std::string& url, std::string& why);
/// Letters, digits, '-', '_' or '.', at most 63: what a member's name may be.
bool valid_member_name(std::string_view name);
/// An IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& s);

/// Loads and validates a file.
config load_file(const std::string& path);

/// Loads and validates YAML text; `source` names it in messages.
config load_text(std::string_view yaml, const std::string& source);

}  // namespace patroxy::conf
