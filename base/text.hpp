#pragma once
// Text that arrives from a network (startup parameters, Patroni and etcd
// answers, HTTP requests) made safe before it reaches a log line or a JSON
// document: nlohmann_json throws on invalid UTF-8 when it dumps, and a raw
// newline in a log line forges another line.

#include <cstddef>
#include <string>
#include <string_view>

namespace patroxy::base {

/// `in` with every invalid UTF-8 sequence replaced by U+FFFD, so that it can
/// go into JSON as is. Valid text comes back unchanged.
std::string valid_utf8(std::string_view in);

/// True when `in` is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool is_valid_utf8(std::string_view in);

/// `in` for a log line: control characters (C0, DEL) and bytes that are not
/// valid UTF-8 become \xNN; printable text, UTF-8 included, stays as it is.
std::string printable(std::string_view in);

/// A log field value a client chose (user, database, application_name):
/// control characters and invalid UTF-8 as \xNN, and the whole quoted with "
/// (inner " and \ escaped) when it is empty or holds a space, a quote, a
/// backslash, '=' or an escape, so that one field cannot look like several.
std::string field(std::string_view in);

/// Longest a client-chosen name is kept for display and logs: PostgreSQL's
/// NAMEDATALEN - 1 (user, database, application_name are cut there by the
/// server too), so that a 10 KB startup parameter costs no more than a name.
inline constexpr std::size_t max_name_bytes = 63;

/// The first `max` bytes of `in` at most, cut at the start of a UTF-8
/// sequence so that no character is split (invalid bytes count as one each).
std::string_view clip_utf8(std::string_view in, std::size_t max = max_name_bytes);

/// Compares two secrets in time that depends only on their lengths, not on
/// where they first differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace patroxy::base
