// Symbolization fixture (C++): namespaces, templates, an operator, a
// lambda and an inlined member function. Recipe: build.sh.
#include <cstdio>
#include <vector>
#include <algorithm>

namespace shop {
template <typename T, int N>
struct Basket {
    std::vector<T> items;
    __attribute__((noinline)) T total() const {
        T sum{};
        for (const T &x : items) sum += x * N;
        return sum;
    }
    inline __attribute__((always_inline)) T scaled(T k) const { return total() * k; }
    __attribute__((noinline)) bool operator<(const Basket &o) const { return total() < o.total(); }
};

namespace detail {
__attribute__((noinline)) double price(const Basket<double, 3> &b, double k) { return b.scaled(k) + 1.0; }
}  // namespace detail
}  // namespace shop

int main(int argc, char **) {
    shop::Basket<double, 3> a{{1.0, 2.0, double(argc)}}, b{{2.0, 3.0}};
    auto pick = [&](double k) __attribute__((noinline)) { return shop::detail::price(a < b ? a : b, k); };
    std::printf("%f\n", pick(2.0));
    return 0;
}
