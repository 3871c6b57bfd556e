// libFuzzer target: a client's first packet. Built by tests/fuzz_run.sh.
#include "protocol/first_packet.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto d = patroxy::protocol::decode_first_packet({data, size});
    if (d.consumed > size || (d.st == patroxy::protocol::status::bad && d.why.empty())) {
        std::abort();
    }
    return 0;
}
