// Corpus replay: the same LLVMFuzzerTestOneInput as the libFuzzer target, run over every file
// of the corpus folders (and files) given on the command line. Built in every build type so
// `scripts/test` replays each corpus; the fuzz build links libFuzzer's own main instead.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

static int run_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "replay: cannot open %s\n", path.c_str());
        return 1;
    }
    std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size());
    return 0;
}

int main(int argc, char** argv) {
    unsigned files = 0;
    int errors = 0;
    for (int i = 1; i < argc; ++i) {
        std::string p = argv[i];
        struct stat st {};
        if (stat(p.c_str(), &st) != 0) {
            std::fprintf(stderr, "replay: missing %s\n", p.c_str());
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            DIR* d = opendir(p.c_str());
            while (dirent* e = readdir(d)) {
                std::string name = e->d_name;
                if (name == "." || name == "..") continue;
                errors += run_file(p + "/" + name);
                ++files;
            }
            closedir(d);
        } else {
            errors += run_file(p);
            ++files;
        }
    }
    if (files == 0) {
        std::fprintf(stderr, "replay: no corpus files found\n");
        return 1;
    }
    std::printf("replayed %u inputs\n", files);
    return errors ? 1 : 0;
}
