// libFuzzer target: server messages of the startup phase. Built by tests/fuzz_run.sh.
#include "protocol/server_message.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::size_t at = 0;
    // Walk a stream of messages as the session would.
    for (int i = 0; i < 64 && at < size; ++i) {
        const auto d = patroxy::protocol::decode_server_message({data + at, size - at});
        if (d.st != patroxy::protocol::status::complete) {
            if (d.st == patroxy::protocol::status::bad && d.why.empty()) {
                std::abort();
            }
            break;
        }
        if (d.consumed == 0 || d.consumed > size - at) {
            std::abort();
        }
        at += d.consumed;
    }
    return 0;
}
