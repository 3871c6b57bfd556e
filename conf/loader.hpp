#pragma once
// Reads and validates patroxy's YAML file. Every problem is collected in one
// pass and reported as "file:line:col: key.path: message" (1-based, like a
// compiler), so an operator fixes the file in one go.

#include "conf/config.hpp"

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

/// Loads and validates a file.
config load_file(const std::string& path);

/// Loads and validates YAML text; `source` names it in messages.
config load_text(std::string_view yaml, const std::string& source);

}  // namespace patroxy::conf
