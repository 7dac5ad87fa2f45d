#include <x86_64-linux-gnu/libunwind.h>
