// RFC 5798 section 6.4, clause by clause, on the pure state machine with an
// injected clock.

#include "vip/vrrp_machine.hpp"

#include <catch2/catch.hpp>

using namespace patroxy::vip;
using namespace std::chrono_literals;
using cs = vrrp_machine::centiseconds;
using kind = vrrp_action;

namespace {

constexpr std::uint32_t ours = 0x0A000011;     // 10.0.0.17
constexpr std::uint32_t lower_ip = 0x0A000005;
constexpr std::uint32_t higher_ip = 0x0A000020;

vrrp_machine::settings with(int priority, bool preempt = true, std::chrono::milliseconds delay = 0ms) {
    vrrp_machine::settings s;
    s.priority = priority;
    s.advert_interval = cs{100};
    s.preempt = preempt;
    s.preempt_delay = delay;
    s.primary_address = ours;
    return s;
}

const vrrp_machine::time_point t0{};

bool has(const vrrp_actions& a, vrrp_action::kind k, int priority = -1) {
    for (const auto& x : a) {
        if (x.what == k && (priority < 0 || x.priority == priority)) {
            return true;
        }
    }
    return false;
}

// A machine that became master at t0 + Master_Down_Interval.
vrrp_machine master_at(int priority, vrrp_machine::time_point& now) {
    vrrp_machine m(with(priority));
    m.start(t0, priority);
    now = *m.next_deadline();
    m.on_timer(now);
    REQUIRE(m.state() == vrrp_state::master);
    return m;
}

}  // namespace

TEST_CASE("6.1 Skew_Time and Master_Down_Interval follow the priority and the master's interval", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    // (256 - 100) * 100 / 256 = 60 cs; 3 * 100 + 60
    CHECK(m.skew_time() == cs{60});
    CHECK(m.master_down_interval() == cs{360});
    vrrp_machine high(with(254));
    high.start(t0, 254);
    CHECK(high.skew_time() == cs{0});  // 2 * 100 / 256 rounds down
}

TEST_CASE("6.4.1 a non-owner starts as backup with Master_Down_Timer, the owner as master", "[vip]") {
    vrrp_machine m(with(100));
    CHECK(m.start(t0, 100).empty());
    CHECK(m.state() == vrrp_state::backup);
    CHECK(m.next_deadline() == t0 + cs{360});
    vrrp_machine owner(with(255));
    const auto a = owner.start(t0, 255);
    CHECK(owner.state() == vrrp_state::master);
    CHECK(has(a, kind::add_vip));
    CHECK(has(a, kind::send_advert, 255));
    CHECK(has(a, kind::send_garps));
}

TEST_CASE("6.4.2 a silent master: the backup takes over when Master_Down_Timer fires", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    CHECK(m.on_timer(t0 + cs{359}).empty());
    CHECK(m.state() == vrrp_state::backup);
    const auto a = m.on_timer(t0 + cs{360});
    CHECK(m.state() == vrrp_state::master);
    REQUIRE(a.size() == 3);
    CHECK(a[0] == vrrp_action{kind::add_vip});           // the VIP first,
    CHECK(a[1] == vrrp_action{kind::send_advert, 100});  // then the advert
    CHECK(a[2] == vrrp_action{kind::send_garps});        // and the ARP caches
    CHECK(m.next_deadline() == t0 + cs{460});            // Adver_Timer
}

TEST_CASE("6.4.2 adverts from a master of higher or equal priority reset Master_Down_Timer", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    for (int i = 1; i <= 10; ++i) {
        CHECK(m.on_advert(t0 + cs{100 * i}, higher_ip, 150, cs{100}).empty());
        CHECK(m.on_timer(t0 + cs{100 * i + 50}).empty());
    }
    CHECK(m.state() == vrrp_state::backup);
    CHECK(m.master_address() == higher_ip);
    CHECK(m.on_advert(t0 + cs{1100}, higher_ip, 100, cs{100}).empty());  // equal priority
    CHECK(m.next_deadline() == t0 + cs{1100 + 360});
}

TEST_CASE("6.4.2 the backup learns the master's advert interval and recomputes its timers", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    m.on_advert(t0 + cs{10}, higher_ip, 200, cs{10});  // master advertises every 100 ms
    CHECK(m.master_advert_interval() == cs{10});
    CHECK(m.skew_time() == cs{6});  // 156 * 10 / 256
    CHECK(m.master_down_interval() == cs{36});
    CHECK(m.next_deadline() == t0 + cs{10 + 36});
}

TEST_CASE("6.4.2 a priority 0 advert makes the backup take over after Skew_Time", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    m.on_advert(t0 + cs{100}, higher_ip, 200, cs{100});
    CHECK(m.on_advert(t0 + cs{150}, higher_ip, 0, cs{100}).empty());
    CHECK(m.next_deadline() == t0 + cs{150 + 60});
    CHECK(has(m.on_timer(t0 + cs{210}), kind::add_vip));
    CHECK(m.state() == vrrp_state::master);
}

TEST_CASE("6.4.2 with pre-emption a lower priority master is ignored and pre-empted, without it obeyed", "[vip]") {
    vrrp_machine pre(with(150));
    pre.start(t0, 150);
    for (int i = 1; i <= 3; ++i) {
        pre.on_advert(t0 + cs{100 * i}, lower_ip, 100, cs{100});
    }
    // Adverts of priority 100 did not reset the timer set at start.
    CHECK(pre.next_deadline() == t0 + cs{300 + (256 - 150) * 100 / 256});
    pre.on_timer(*pre.next_deadline());
    CHECK(pre.state() == vrrp_state::master);

    vrrp_machine polite(with(150, false));
    polite.start(t0, 150);
    for (int i = 1; i <= 10; ++i) {
        polite.on_advert(t0 + cs{100 * i}, lower_ip, 100, cs{100});
        polite.on_timer(t0 + cs{100 * i + 50});
    }
    CHECK(polite.state() == vrrp_state::backup);
}

TEST_CASE("pre-emption delay: no pre-emption until the delay after start has passed", "[vip]") {
    vrrp_machine m(with(150, true, 5s));
    m.start(t0, 150);
    for (int i = 1; i <= 4; ++i) {  // up to 4 s: the lower master is obeyed
        m.on_advert(t0 + cs{100 * i}, lower_ip, 100, cs{100});
        m.on_timer(t0 + cs{100 * i + 50});
    }
    CHECK(m.state() == vrrp_state::backup);
    m.on_advert(t0 + cs{500}, lower_ip, 100, cs{100});  // 5 s: no longer resets the timer
    CHECK(m.next_deadline() == t0 + cs{400} + m.master_down_interval());
    m.on_timer(*m.next_deadline());
    CHECK(m.state() == vrrp_state::master);
}

TEST_CASE("6.4.3 the master sends an advert every Advertisement_Interval", "[vip]") {
    vrrp_machine::time_point now;
    auto m = master_at(100, now);
    for (int i = 1; i <= 5; ++i) {
        CHECK(m.on_timer(now + cs{100 * i} - cs{1}).empty());
        CHECK(m.on_timer(now + cs{100 * i}) == vrrp_actions{{kind::send_advert, 100}});
    }
}

TEST_CASE("6.4.3 the master steps down for a higher priority, or an equal one from a higher address", "[vip]") {
    vrrp_machine::time_point now;
    auto a = master_at(100, now);
    CHECK(a.on_advert(now, higher_ip, 101, cs{100}) == vrrp_actions{{kind::remove_vip}});
    CHECK(a.state() == vrrp_state::backup);
    CHECK(a.next_deadline() == now + a.master_down_interval());

    auto b = master_at(100, now);
    CHECK(b.on_advert(now, higher_ip, 100, cs{100}) == vrrp_actions{{kind::remove_vip}});
    CHECK(b.state() == vrrp_state::backup);

    // Tie from a lower address, or lower priority: we stay, answer at once and
    // re-announce the VIP (a healed split: clients may have learned the other MAC).
    auto c = master_at(100, now);
    const vrrp_actions reassert{{kind::send_advert, 100}, {kind::send_garps}};
    CHECK(c.on_advert(now, lower_ip, 100, cs{100}) == reassert);
    CHECK(c.on_advert(now, higher_ip, 99, cs{100}) == reassert);
    CHECK(c.state() == vrrp_state::master);
}

TEST_CASE("6.4.3 a master answers another master's priority 0 advert at once", "[vip]") {
    vrrp_machine::time_point now;
    auto m = master_at(100, now);
    CHECK(m.on_advert(now + cs{30}, higher_ip, 0, cs{100}) == vrrp_actions{{kind::send_advert, 100}});
    CHECK(m.next_deadline() == now + cs{130});
}

TEST_CASE("6.4.3 shutdown: the master resigns with priority 0 and removes the VIP, a backup just stops", "[vip]") {
    vrrp_machine::time_point now;
    auto m = master_at(100, now);
    CHECK(m.shutdown(now) == vrrp_actions{{kind::send_advert, 0}, {kind::remove_vip}});
    CHECK(m.state() == vrrp_state::initialize);
    CHECK(!m.next_deadline());
    vrrp_machine b(with(100));
    b.start(t0, 100);
    CHECK(b.shutdown(t0).empty());
}

TEST_CASE("tracking: a lower priority is announced at once and a higher backup pre-empts", "[vip]") {
    vrrp_machine::time_point now;
    auto m = master_at(150, now);
    CHECK(m.set_priority(now + cs{10}, 100) == vrrp_actions{{kind::send_advert, 100}});
    // The backup (priority 120) ignores 100-adverts and takes over at its timer...
    vrrp_machine backup(with(120));
    backup.start(t0, 120);
    backup.on_advert(now, lower_ip, 150, cs{100});
    backup.on_advert(now + cs{10}, lower_ip, 100, cs{100});
    backup.on_timer(now + backup.master_down_interval());
    CHECK(backup.state() == vrrp_state::master);
    // ...and its advert makes the old master step down.
    CHECK(m.on_advert(now + cs{400}, higher_ip, 120, cs{100}) == vrrp_actions{{kind::remove_vip}});
}

TEST_CASE("tracking with weight 0: FAULT never holds the VIP and recovers to backup", "[vip]") {
    vrrp_machine::time_point now;
    auto m = master_at(100, now);
    CHECK(m.set_priority(now, 0) == vrrp_actions{{kind::send_advert, 0}, {kind::remove_vip}});
    CHECK(m.state() == vrrp_state::fault);
    CHECK(m.on_timer(now + 1h).empty());
    CHECK(m.on_master_dead(now).empty());
    CHECK(m.on_advert(now, lower_ip, 1, cs{100}).empty());
    CHECK(m.state() == vrrp_state::fault);
    CHECK(m.set_priority(now + 10s, 100).empty());
    CHECK(m.state() == vrrp_state::backup);
    CHECK(m.next_deadline() == now + 10s + m.master_down_interval());

    vrrp_machine f(with(100));
    CHECK(f.start(t0, 0).empty());  // unhealthy from the start
    CHECK(f.state() == vrrp_state::fault);
}

TEST_CASE("a master whose patroxy is known dead is taken over at once, by a backup only", "[vip]") {
    vrrp_machine m(with(100));
    m.start(t0, 100);
    m.on_advert(t0 + cs{100}, higher_ip, 200, cs{100});
    CHECK(has(m.on_master_dead(t0 + cs{120}), kind::add_vip));
    CHECK(m.state() == vrrp_state::master);
    CHECK(m.on_master_dead(t0 + cs{130}).empty());
}
