#pragma once
// Relay buffers are lent per read and returned after the write completes, so
// an idle session holds no buffer at all (10,000 idle sessions cost no 16 KiB
// each). One pool per worker thread: no locks.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace patroxy::proxy {

class buffer_pool {
public:
    static constexpr std::size_t buffer_size = 16 * 1024;
    using buffer = std::array<std::uint8_t, buffer_size>;

    /// Returns a buffer to `pool` when it goes out of scope.
    class lease {
    public:
        lease() = default;
        lease(buffer_pool* pool, std::unique_ptr<buffer> b) : pool_(pool), buf_(std::move(b)) {}
        lease(lease&&) noexcept = default;
        lease& operator=(lease&& other) noexcept {
            release();
            pool_ = other.pool_;
            buf_ = std::move(other.buf_);
            return *this;
        }
        ~lease() { release(); }
        std::uint8_t* data() { return buf_->data(); }
        std::size_t size() const { return buffer_size; }
        explicit operator bool() const { return buf_ != nullptr; }
        void release() {
            if (buf_) {
                pool_->give_back(std::move(buf_));
            }
        }

    private:
        buffer_pool* pool_ = nullptr;
        std::unique_ptr<buffer> buf_;
    };

    explicit buffer_pool(std::size_t keep_at_most = 256) : keep_(keep_at_most) {}

    lease take() {
        if (free_.empty()) {
            return {this, std::make_unique<buffer>()};
        }
        auto b = std::move(free_.back());
        free_.pop_back();
        return {this, std::move(b)};
    }

private:
    void give_back(std::unique_ptr<buffer> b) {
        if (free_.size() < keep_) {
            free_.push_back(std::move(b));
        }
    }

    std::size_t keep_;
    std::vector<std::unique_ptr<buffer>> free_;
};

}  // namespace patroxy::proxy
