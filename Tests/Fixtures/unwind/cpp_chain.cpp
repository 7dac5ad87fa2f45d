// Namespaces and templates: main -> app::Runner::run -> app::detail::Pipeline<double>::stage
//   -> app::detail::Stage<double>::process -> app::detail::Kernel<double, 3>::hot
// Four noinline functions under main, each with work after its call (no tail calls).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
volatile double gsink;
/* Outer-loop iterations, read by bench/compare.py (see common.h). */
extern "C" { uint64_t sprof_work; }

namespace app {
namespace detail {
template <typename T, int N>
struct Kernel {
    NOINL T hot(T x, long n) {
        for (long i = 0; i < n; i++) x = x * (T)0.9999999 + (T)(i & 7) * (T)N;
        return x;
    }
};
template <typename T>
class Stage {
  public:
    NOINL T process(T x, long n) {
        Kernel<T, 3> k;
        T r = k.hot(x, n);
        gsink = r;
        return r + 1;
    }
};
template <typename T>
struct Pipeline {
    NOINL T stage(T x, long n) {
        Stage<T> s;
        T r = s.process(x, n);
        gsink = r;
        return r * (T)0.5;
    }
};
}  // namespace detail

class Runner {
  public:
    NOINL double run(double seconds) {
        detail::Pipeline<double> p;
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        double a = 1;
        while (std::chrono::steady_clock::now() < end) {
            a = p.stage(a, 100000) * 1e-3;
            __atomic_fetch_add(&sprof_work, 1, __ATOMIC_RELAXED);
        }
        return a;
    }
};
}  // namespace app

int main(int argc, char **argv) {
    double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
    std::printf("pid=%d\n", (int)getpid());
    std::fflush(stdout);
    app::Runner r;
    gsink = r.run(seconds);
    return 0;
}
