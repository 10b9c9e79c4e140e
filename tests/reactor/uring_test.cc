// io_uring unavailable: a forked child installs a real seccomp filter that makes io_uring_setup
// fail (as Docker's default profile does), then starts an engine. The error must say what is
// wrong and name the fix.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstddef>

#include "helpers.hh"

namespace ferry::reactor::testing {
namespace {

#if defined(__x86_64__)
constexpr unsigned this_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned this_arch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned this_arch = 0;
#endif

bool deny_io_uring_setup(int err) {
    sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, this_arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof(f) / sizeof(f[0])), f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}

struct child_report {
    int filtered = 0;   // the filter was installed
    int started = 0;    // engine::start succeeded (it must not)
    int code = 0;
    int sys = 0;
    int names_profile = 0;
    int names_sysctl = 0;
};

child_report start_under_filter(int err) {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        child_report r;
        r.filtered = deny_io_uring_setup(err);
        if (r.filtered) {
            config cfg;
            cfg.shards = 1;
            auto e = engine::start(cfg);
            r.started = e.has_value();
            if (!e) {
                std::string_view d = e.err().detail;
                r.code = static_cast<int>(e.err().code);
                r.sys = e.err().sys;
                r.names_profile = d.find("deploy/seccomp-ferry.json") != std::string_view::npos;
                r.names_sysctl = d.find("kernel.io_uring_disabled=0") != std::string_view::npos;
            }
        }
        (void)!::write(p[1], &r, sizeof(r));
        ::_exit(0);
    }
    ::close(p[1]);
    child_report r;
    EXPECT_EQ(::read(p[0], &r, sizeof(r)), static_cast<ssize_t>(sizeof(r)));
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return r;
}

TEST(UringUnavailable, SeccompEpermNamesTheFix) {
    if (this_arch == 0) GTEST_SKIP() << "seccomp filter written for x86-64 and arm64";
    child_report r = start_under_filter(EPERM);
    ASSERT_TRUE(r.filtered);
    EXPECT_FALSE(r.started);
    EXPECT_EQ(r.code, static_cast<int>(errc::unsupported));
    EXPECT_EQ(r.sys, EPERM);
    EXPECT_TRUE(r.names_profile);
    EXPECT_TRUE(r.names_sysctl);
}

TEST(UringUnavailable, EnosysNamesTheFix) {
    if (this_arch == 0) GTEST_SKIP() << "seccomp filter written for x86-64 and arm64";
    child_report r = start_under_filter(ENOSYS);
    ASSERT_TRUE(r.filtered);
    EXPECT_FALSE(r.started);
    EXPECT_EQ(r.sys, ENOSYS);
    EXPECT_TRUE(r.names_profile);
}

TEST(UringUnavailable, ErrorTextIsStable) {
    error e = uring_unavailable_error(-EPERM);
    EXPECT_EQ(e.code, errc::unsupported);
    EXPECT_EQ(e.sys, EPERM);
    EXPECT_NE(std::string_view(e.detail).find("seccomp"), std::string_view::npos);
}

}  // namespace
}  // namespace ferry::reactor::testing
