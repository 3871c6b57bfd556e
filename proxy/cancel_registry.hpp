#pragma once
// Which member issued each BackendKeyData, and at which address the session
// reached it, so a CancelRequest (which arrives on a new connection, maybe on
// another worker, maybe after a reload moved the member) goes there only.
// Shared by all workers; touched once when a session learns its key, once
// when it ends, and once per cancel: never per byte.

#include "health/topology.hpp"
#include "protocol/first_packet.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace patroxy::proxy {

class cancel_registry {
public:
    struct owner_of {
        health::member_id member = 0;
        boost::asio::ip::tcp::endpoint endpoint;
    };
    void add(const protocol::cancel_key& key, health::member_id member, const boost::asio::ip::tcp::endpoint& at) {
        std::lock_guard lock(mutex_);
        owners_[text(key)] = {member, at};
    }
    void remove(const protocol::cancel_key& key) {
        std::lock_guard lock(mutex_);
        owners_.erase(text(key));
    }
    std::optional<owner_of> owner(const protocol::cancel_key& key) const {
        std::lock_guard lock(mutex_);
        const auto it = owners_.find(text(key));
        return it == owners_.end() ? std::nullopt : std::optional<owner_of>(it->second);
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return owners_.size();
    }

private:
    // pid and secret as one string key (secrets are up to 256 bytes in 3.2).
    static std::string text(const protocol::cancel_key& key) {
        std::string s(reinterpret_cast<const char*>(&key.pid), sizeof key.pid);
        s.append(key.secret.begin(), key.secret.end());
        return s;
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, owner_of> owners_;
};

}  // namespace patroxy::proxy
