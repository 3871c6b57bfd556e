#include "base/text.hpp"

#include <catch2/catch.hpp>

using namespace patroxy::base;

TEST_CASE("invalid UTF-8 is replaced, valid text is kept", "[base]") {
    CHECK(valid_utf8("app") == "app");
    CHECK(valid_utf8("gr\xc3\xbc\xc3\x9f") == "gr\xc3\xbc\xc3\x9f");
    CHECK(valid_utf8("\xff\xfe") == "\xef\xbf\xbd\xef\xbf\xbd");
    CHECK(valid_utf8("a\xc3") == "a\xef\xbf\xbd");            // cut short
    CHECK(valid_utf8("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
    CHECK(valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
    CHECK(valid_utf8("\xf4\x90\x80\x80").find('\xf4') == std::string::npos);      // past U+10FFFF
    CHECK(is_valid_utf8("\xf0\x9f\x90\x98"));
    CHECK(!is_valid_utf8("\xff"));
}

TEST_CASE("log text: control characters and invalid bytes escaped, fields quoted when needed", "[base]") {
    CHECK(printable("one\nline\r\x7f") == "one\\x0aline\\x0d\\x7f");
    CHECK(printable("caf\xc3\xa9 \xff") == "caf\xc3\xa9 \\xff");
    CHECK(field("app") == "app");
    CHECK(field("") == "\"\"");
    CHECK(field("a b") == "\"a b\"");
    CHECK(field("x reason=done") == "\"x reason=done\"");
    CHECK(field("q\"\\") == "\"q\\\"\\\\\"");
    CHECK(field("evil\n2026-01-01T00:00:00.000Z error main: forged") ==
          "\"evil\\x0a2026-01-01T00:00:00.000Z error main: forged\"");
    CHECK(field("\xff") == "\"\\xff\"");
}

TEST_CASE("secrets compare equal only when equal, whatever the lengths", "[base]") {
    CHECK(constant_time_equal("Basic abc", "Basic abc"));
    CHECK(!constant_time_equal("Basic abc", "Basic abd"));
    CHECK(!constant_time_equal("Basic abc", "Basic ab"));
    CHECK(!constant_time_equal("", "x"));
    CHECK(constant_time_equal("", ""));
}

TEST_CASE("names are clipped to 63 bytes without splitting a character", "[base]") {
    CHECK(clip_utf8("app") == "app");
    CHECK(clip_utf8(std::string(63, 'a')) == std::string(63, 'a'));
    CHECK(clip_utf8(std::string(10000, 'a')) == std::string(63, 'a'));
    // U+00E9 (2 bytes) at bytes 62-63: kept whole or not at all.
    CHECK(clip_utf8(std::string(62, 'a') + "\xc3\xa9" + "zzz") == std::string(62, 'a'));
    // U+1F418 (4 bytes) at bytes 61-64.
    CHECK(clip_utf8(std::string(61, 'a') + "\xf0\x9f\x90\x98" + "z") == std::string(61, 'a'));
    CHECK(clip_utf8(std::string(59, 'a') + "\xf0\x9f\x90\x98" + "z") == std::string(59, 'a') + "\xf0\x9f\x90\x98");
    // Not UTF-8: a run of continuation bytes is cut where the limit says.
    CHECK(clip_utf8(std::string(100, '\x80')).size() == 63);
    CHECK(clip_utf8("abcdef", 4) == "abcd");
}
