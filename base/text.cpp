#include "base/text.hpp"

#include <cstdint>

namespace patroxy::base {
namespace {

// Length of the valid UTF-8 sequence at in[at], or 0 when it is not one
// (RFC 3629 section 4: no overlong forms, no surrogates, nothing past U+10FFFF).
std::size_t sequence_at(std::string_view in, std::size_t at) {
    const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(in[i]); };
    const std::uint8_t b0 = byte(at);
    if (b0 < 0x80) {
        return 1;
    }
    std::size_t len = 0;
    std::uint8_t lo = 0x80;
    std::uint8_t hi = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        len = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3;
        lo = b0 == 0xe0 ? 0xa0 : 0x80;   // overlong
        hi = b0 == 0xed ? 0x9f : 0xbf;   // surrogates
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4;
        lo = b0 == 0xf0 ? 0x90 : 0x80;   // overlong
        hi = b0 == 0xf4 ? 0x8f : 0xbf;   // past U+10FFFF
    } else {
        return 0;
    }
    if (at + len > in.size()) {
        return 0;
    }
    const std::uint8_t b1 = byte(at + 1);
    if (b1 < lo || b1 > hi) {
        return 0;
    }
    for (std::size_t i = 2; i < len; ++i) {
        const std::uint8_t b = byte(at + i);
        if (b < 0x80 || b > 0xbf) {
            return 0;
        }
    }
    return len;
}

void append_hex(std::string& out, std::uint8_t b) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[b >> 4];
    out += digits[b & 0x0f];
}

}  // namespace

bool is_valid_utf8(std::string_view in) {
    for (std::size_t at = 0; at < in.size();) {
        const auto n = sequence_at(in, at);
        if (n == 0) {
            return false;
        }
        at += n;
    }
    return true;
}

std::string valid_utf8(std::string_view in) {
    if (is_valid_utf8(in)) {
        return std::string(in);
    }
    std::string out;
    out.reserve(in.size() + 8);
    for (std::size_t at = 0; at < in.size();) {
        const auto n = sequence_at(in, at);
        if (n == 0) {
            out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
            ++at;
        } else {
            out.append(in.substr(at, n));
            at += n;
        }
    }
    return out;
}

std::string printable(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t at = 0; at < in.size();) {
        const auto b = static_cast<std::uint8_t>(in[at]);
        const auto n = sequence_at(in, at);
        if (n == 0 || b < 0x20 || b == 0x7f) {
            append_hex(out, b);
            ++at;
        } else {
            out.append(in.substr(at, n));
            at += n;
        }
    }
    return out;
}

std::string field(std::string_view in) {
    std::string body;
    body.reserve(in.size());
    bool quote = in.empty();
    for (std::size_t at = 0; at < in.size();) {
        const auto b = static_cast<std::uint8_t>(in[at]);
        const auto n = sequence_at(in, at);
        if (n == 0 || b < 0x20 || b == 0x7f) {
            append_hex(body, b);
            quote = true;
            ++at;
            continue;
        }
        if (b == '"' || b == '\\') {
            body += '\\';
        }
        quote = quote || b == ' ' || b == '"' || b == '\\' || b == '=';
        body.append(in.substr(at, n));
        at += n;
    }
    return quote ? "\"" + body + "\"" : body;
}

std::string_view clip_utf8(std::string_view in, std::size_t max) {
    if (in.size() <= max) {
        return in;
    }
    // Back up over continuation bytes (10xxxxxx) to the lead byte of the
    // sequence the cut would split; at most 3, the longest a sequence has.
    std::size_t cut = max;
    for (int i = 0; i < 3 && cut > 0 && (static_cast<std::uint8_t>(in[cut]) & 0xc0) == 0x80; ++i) {
        --cut;
    }
    if ((static_cast<std::uint8_t>(in[cut]) & 0xc0) == 0x80) {
        cut = max;  // not UTF-8 there anyway: a plain cut splits nothing
    }
    return in.substr(0, cut);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    // Every byte of the longer one is looked at, whatever the contents.
    const std::size_t n = a.size() > b.size() ? a.size() : b.size();
    unsigned diff = a.size() == b.size() ? 0u : 1u;
    for (std::size_t i = 0; i < n; ++i) {
        const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0u;
        const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0u;
        diff |= x ^ y;
    }
    return diff == 0;
}

}  // namespace patroxy::base
