/* libunwind_plugin.so, dlopen()ed by c_dlopen: plugin_entry -> plugin_leaf. */
#include "common.h"

volatile uint64_t plugin_sink;

NOINL uint64_t plugin_leaf(uint64_t x) { for (int i = 0; i < 100000; i++) MIX(x); return x; }
NOINL uint64_t plugin_entry(uint64_t x) { uint64_t r = plugin_leaf(x); plugin_sink = r; return r + 7; }
