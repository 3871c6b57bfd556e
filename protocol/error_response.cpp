#include "protocol/error_response.hpp"

namespace patroxy::protocol {
namespace {

void put_field(std::vector<std::uint8_t>& out, char type, std::string_view text) {
    out.push_back(static_cast<std::uint8_t>(type));
    for (const char c : text) {
        out.push_back(c == '\0' ? std::uint8_t{'?'} : static_cast<std::uint8_t>(c));
    }
    out.push_back(0);
}

}  // namespace

void encode_error_response(std::vector<std::uint8_t>& out, severity sev, std::string_view code,
                           std::string_view message, std::string_view detail, std::string_view hint) {
    const auto start = out.size();
    out.push_back('E');
    out.insert(out.end(), 4, 0);  // length, patched below
    const std::string_view sev_text = sev == severity::fatal ? "FATAL" : "ERROR";
    put_field(out, 'S', sev_text);
    put_field(out, 'V', sev_text);  // non-localized severity, PostgreSQL >= 9.6
    put_field(out, 'C', code);
    put_field(out, 'M', message);
    if (!detail.empty()) {
        put_field(out, 'D', detail);
    }
    if (!hint.empty()) {
        put_field(out, 'H', hint);
    }
    out.push_back(0);
    const auto len = static_cast<std::uint32_t>(out.size() - start - 1);
    out[start + 1] = static_cast<std::uint8_t>(len >> 24);
    out[start + 2] = static_cast<std::uint8_t>(len >> 16);
    out[start + 3] = static_cast<std::uint8_t>(len >> 8);
    out[start + 4] = static_cast<std::uint8_t>(len);
}

}  // namespace patroxy::protocol
