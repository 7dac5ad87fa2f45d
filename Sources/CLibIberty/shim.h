// libiberty's demangler (GCC/binutils; Debian: libiberty-dev, a static,
// position-independent libiberty.a): the code behind `nm -C`, `addr2line -C`
// and `c++filt`. Itanium C++ and Rust (legacy and v0) through one entry,
// cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO).
#include <libiberty/demangle.h>
