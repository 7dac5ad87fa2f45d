/*
 * libunwind's remote x86_64 DWARF unwinder over one captured sample, as an
 * oracle for differential tests of sprof's own unwinder (SprofUnwind).
 *
 * The approach is perf's (tools/perf/util/unwind-libunwind-local.c): a
 * libunwind address space whose accessors serve memory from the captured
 * user-stack bytes and from the ELF files behind the mappings, and registers
 * from the sample. Unwind tables come from each file's .eh_frame_hdr
 * (PT_GNU_EH_FRAME), handed to libunwind as UNW_INFO_FORMAT_REMOTE_TABLE.
 *
 * Swift reaches this through SprofUnwind's LibunwindUnwinder; nothing else
 * should include it. Not thread-safe: one unwinder per thread.
 */
#ifndef SPROF_UNWIND_ORACLE_H
#define SPROF_UNWIND_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An unwinder: a libunwind address space plus a cache of mapped ELF files
 * (by path, kept until the unwinder is destroyed). */
typedef struct sprof_uo_unwinder sprof_uo_unwinder;

/* How a mapping's bytes are to be read. */
typedef enum {
    /* No bytes: anonymous memory, [stack], [heap], a file that cannot be had. */
    SPROF_UO_SOURCE_NONE = 0,
    /* The ELF file at `path`, mapped read-only once per unwinder. */
    SPROF_UO_SOURCE_FILE = 1,
    /* This process's own vDSO (getauxval(AT_SYSINFO_EHDR)): right only for
     * samples recorded on this machine since it booted. */
    SPROF_UO_SOURCE_OWN_VDSO = 2,
} sprof_uo_source;

/* Permission bits of a mapping (only `EXEC` matters: it picks the PT_LOAD
 * segment when a file offset falls in two). */
enum {
    SPROF_UO_MAP_READ = 1,
    SPROF_UO_MAP_WRITE = 2,
    SPROF_UO_MAP_EXEC = 4,
};

/* One line of /proc/PID/maps, with where to read its bytes. */
typedef struct {
    uint64_t start;        /* [start, end) in the process */
    uint64_t end;
    uint64_t file_offset;  /* file offset of `start` */
    uint32_t permissions;  /* SPROF_UO_MAP_* */
    uint32_t source;       /* sprof_uo_source */
    const char *path;      /* the file to read (SOURCE_FILE); copied */
} sprof_uo_mapping;

/* One sample's user registers and stack copy. */
typedef struct {
    uint64_t ip;
    uint64_t sp;
    uint64_t bp;
    const uint8_t *stack;  /* the bytes at [sp, sp + stack_length) */
    size_t stack_length;
} sprof_uo_sample;

/* Why the walk stopped. */
typedef enum {
    /* unw_step() returned 0: the CFI marks the outermost frame (the return
     * address column is DW_CFA_undefined, as in glibc's _start and
     * clone()), or rbp's rule is undefined. */
    SPROF_UO_STOP_END_OF_STACK = 0,
    /* A step gave the return address 0 (a common end-of-stack marker); 0 is
     * not reported as a frame. */
    SPROF_UO_STOP_ZERO_RETURN_ADDRESS = 1,
    /* The frames buffer is full. */
    SPROF_UO_STOP_FRAME_LIMIT = 2,
    /* `address` (an ip) is in no mapping. */
    SPROF_UO_STOP_NO_MAPPING = 3,
    /* `address` (an ip) is in mapping `mapping_index`, which has no file. */
    SPROF_UO_STOP_NO_FILE = 4,
    /* The file of mapping `mapping_index` could not be used: `detail`. */
    SPROF_UO_STOP_BAD_FILE = 5,
    /* No CFI covers `address` (an ip, already minus one for a return
     * address) in the file of mapping `mapping_index`: `detail`. */
    SPROF_UO_STOP_NO_UNWIND_INFO = 6,
    /* A read at `address` in the mapping that holds sp, outside the
     * captured bytes (the copy is shorter than the stack). */
    SPROF_UO_STOP_READ_OUTSIDE_STACK = 7,
    /* A read at `address` in mapping `mapping_index`, which has no bytes. */
    SPROF_UO_STOP_READ_NO_BYTES = 8,
    /* A read at `address`, which is in no mapping. */
    SPROF_UO_STOP_READ_UNMAPPED = 9,
    /* The CFI needs register `register_number` (libunwind's UNW_X86_64_*),
     * which the sample does not have (only ip, sp, bp are captured). */
    SPROF_UO_STOP_UNKNOWN_REGISTER = 10,
    /* libunwind failed for a reason of its own: `unw_code` (negative
     * UNW_E*), `detail` is unw_strerror(). */
    SPROF_UO_STOP_LIBUNWIND = 11,
} sprof_uo_stop;

typedef struct {
    uint32_t stop;             /* sprof_uo_stop */
    int32_t unw_code;          /* what libunwind returned last (0 or -UNW_E*) */
    uint64_t address;          /* see sprof_uo_stop */
    int64_t mapping_index;     /* index into the mappings as given, or -1 */
    int32_t register_number;   /* see sprof_uo_stop, or -1 */
    /* Frames after which libunwind fell back to its frame-chain heuristics
     * (only when created with allow_heuristics). */
    uint32_t heuristic_steps;
    char detail[256];          /* NUL-terminated, possibly empty */
} sprof_uo_result;

/* A new unwinder, or NULL (out of memory). With `allow_heuristics` set, code
 * without CFI is reported to libunwind as -UNW_ENOINFO, which makes it guess
 * with frame pointers and PLT patterns as perf's unwinder does; without it
 * the walk stops there with SPROF_UO_STOP_NO_UNWIND_INFO. */
sprof_uo_unwinder *sprof_uo_create(int allow_heuristics);
void sprof_uo_destroy(sprof_uo_unwinder *unwinder);

/* Replaces the address space's mappings (copied, paths included). Returns 0,
 * or -1 when out of memory (the old mappings are then gone too). */
int sprof_uo_set_mappings(sprof_uo_unwinder *unwinder, const sprof_uo_mapping *mappings, size_t count);

/* Unwinds `sample` against the current mappings: frames[0] is the sample's
 * ip, then each caller's return address as read from the stack (not minus
 * one). Returns the number of frames written (at most `capacity`) and fills
 * `result` with why it stopped. */
size_t sprof_uo_unwind(sprof_uo_unwinder *unwinder, const sprof_uo_sample *sample,
                       uint64_t *frames, size_t capacity, sprof_uo_result *result);

/* Files mapped so far (tests check the cache). */
size_t sprof_uo_cached_file_count(const sprof_uo_unwinder *unwinder);

#ifdef __cplusplus
}
#endif

#endif
