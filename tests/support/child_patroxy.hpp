#pragma once
// The real patroxy binary as a child process of a test, with a configuration
// the test writes, its log captured in a file, and optional limits applied
// before it starts (a descriptor limit, as an operator's LimitNOFILE would).

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace patroxy::testing {

/// Limits for the child, applied before it starts.
struct child_options {
    long nofile = 0;       ///< RLIMIT_NOFILE (soft and hard) for the child; 0: inherited
    bool upgrade = false;  ///< start with --upgrade (take over from the control socket)
};

class patroxy_child {
public:
    using options = child_options;

    explicit patroxy_child(const std::string& yaml, options o = {}) {
        static std::atomic<int> serial{0};
        dir_ = "/tmp/patroxy-test-" + std::to_string(::getpid()) + "-" + std::to_string(serial++);
        std::system(("mkdir -p " + dir_).c_str());
        config_ = dir_ + "/patroxy.yml";
        log_ = dir_ + "/patroxy.log";
        write_config(yaml);
        pid_ = ::fork();
        if (pid_ == 0) {
            const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 2);
            ::dup2(fd, 1);
            if (o.nofile > 0) {
                const rlimit lim{static_cast<rlim_t>(o.nofile), static_cast<rlim_t>(o.nofile)};
                ::setrlimit(RLIMIT_NOFILE, &lim);
            }
            // PATROXY_UNDER_TEST runs the same test against another build (an
            // older commit's, to see a test fail once before the fix).
            const char* binary = std::getenv("PATROXY_UNDER_TEST");
            ::execl(binary != nullptr && *binary != 0 ? binary : PATROXY_BINARY, "patroxy", "-c", config_.c_str(),
                    o.upgrade ? "--upgrade" : static_cast<char*>(nullptr), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    ~patroxy_child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        std::system(("rm -rf " + dir_).c_str());
    }
    patroxy_child(const patroxy_child&) = delete;
    patroxy_child& operator=(const patroxy_child&) = delete;

    /// Replaces the configuration file (for a reload).
    void write_config(const std::string& yaml) {
        const auto tmp = config_ + ".new";
        std::ofstream(tmp) << yaml;
        std::rename(tmp.c_str(), config_.c_str());
    }
    /// Sends `signo` and waits (bounded) for the exit; returns the exit code
    /// (128 + signal when killed), or -1 if it did not exit within `limit`.
    int signal_and_wait(int signo, std::chrono::milliseconds limit) {
        ::kill(pid_, signo);
        return wait_exit(limit);
    }
    /// Waits (bounded) for the exit without signalling.
    int wait_exit(std::chrono::milliseconds limit) {
        const auto until = std::chrono::steady_clock::now() + limit;
        int status = 0;
        while (std::chrono::steady_clock::now() < until) {
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return -1;
    }
    void signal(int signo) const { ::kill(pid_, signo); }
    /// The process id (-1 once it has exited).
    pid_t pid() const { return pid_; }
    /// Still running (not exited, not a zombie).
    bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
    std::string log() const {
        std::ifstream in(log_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    const std::string& config_path() const { return config_; }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    std::string config_;
    std::string log_;
    pid_t pid_ = -1;
};

}  // namespace patroxy::testing
