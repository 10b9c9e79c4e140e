#pragma once
// Test helpers for src/control: argv from strings, an injectable environment, temporary folders.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "control/config.hh"

namespace ferry::control::test {

struct argv_builder {
    std::vector<std::string> args;
    std::vector<char*> ptrs;
    argv_builder(std::initializer_list<std::string> a) : args(a) {
        args.insert(args.begin(), "prog");
        for (auto& s : args) ptrs.push_back(s.data());
        ptrs.push_back(nullptr);
    }
    int argc() const { return int(args.size()); }
    char** argv() { return ptrs.data(); }
};

struct fake_env {
    std::map<std::string, std::string> vars;
    env_fn fn() const {
        return [this](const char* n) -> const char* {
            auto it = vars.find(n);
            return it == vars.end() ? nullptr : it->second.c_str();
        };
    }
};

// A fresh folder under $TMPDIR, removed (recursively) at destruction.
struct temp_dir {
    std::string path;
    temp_dir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ferry-ctl-XXXXXX";
        char* p = ::mkdtemp(tmpl.data());
        path = p ? p : "";
    }
    ~temp_dir() {
        if (!path.empty()) {
            std::string cmd = "rm -rf '" + path + "'";
            (void)std::system(cmd.c_str());
        }
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
        std::string p = file(name);
        std::ofstream(p, std::ios::binary) << text;
        ::chmod(p.c_str(), mode);
        return p;
    }
};

inline mode_t file_mode(const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return 0;
    return st.st_mode & 07777;
}

inline std::string read_all(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace ferry::control::test
