/*
 * libunwind's remote unwinder over a captured sample: see
 * include/sprof_unwind_oracle.h.
 *
 * libunwind asks, through the accessors of an address space, for
 *   - the unwind info covering an ip (find_proc_info): we find the mapping
 *     and its ELF file, and hand libunwind the file's .eh_frame_hdr table as
 *     UNW_INFO_FORMAT_REMOTE_TABLE at its process address; libunwind's own
 *     dwarf_search_unwind_table() then binary-searches it and parses the
 *     FDE and CIE, reading both through access_mem;
 *   - memory (access_mem, always an aligned 8-byte word): the captured stack
 *     bytes for [sp, sp + length), the mapped file's bytes elsewhere;
 *   - registers (access_reg): ip, sp and bp from the sample, nothing else.
 *
 * Everything libunwind may not have fails with a reason kept in the
 * unwinder, so that a step that fails can say why.
 */
#define _GNU_SOURCE
#include "sprof_unwind_oracle.h"
#include "elf_image.h"

#include <libunwind.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not in libunwind's public headers, but exported (perf declares it the same
 * way): the search of a .eh_frame_hdr table for the FDE covering `ip`. */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t *di,
                                              unw_proc_info_t *pi, int need_unwind_info, void *arg);

typedef struct {
    uint64_t start, end, offset;
    uint32_t permissions, source;
    char *path;
    int64_t given_index;     /* position in the caller's array */
    /* Resolved on first use. */
    int resolved;
    uo_image *image;         /* NULL: no bytes */
    int bias_known;
    uint64_t bias;
} uo_map;

typedef struct {
    int set;
    uint32_t stop;
    uint64_t address;
    int64_t mapping_index;
    int32_t register_number;
    char detail[256];
} uo_failure;

struct sprof_uo_unwinder {
    unw_addr_space_t as;
    int allow_heuristics;
    uo_image_cache cache;
    uo_map *maps;            /* sorted by start */
    size_t map_count;

    /* The unwind in progress. */
    const sprof_uo_sample *sample;
    uo_failure failure;      /* the last thing refused during this step */
    /* With heuristics: find_proc_info answered -UNW_ENOINFO this step, and
     * why (`failure` then moves on to whatever the guess tripped over). */
    int step_had_no_info;
    uo_failure no_info;
    /* The module of the last find_proc_info: libunwind reads its CFI
     * through access_mem, possibly from a segment no mapping shows. */
    const uo_map *current;
};

static void fail(struct sprof_uo_unwinder *u, uint32_t stop, uint64_t address, const uo_map *m, int32_t reg,
                 const char *fmt, ...) {
    u->failure.set = 1;
    u->failure.stop = stop;
    u->failure.address = address;
    u->failure.mapping_index = m ? m->given_index : -1;
    u->failure.register_number = reg;
    u->failure.detail[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->failure.detail, sizeof u->failure.detail, fmt, ap);
        va_end(ap);
    }
}

static const uo_map *find_map(const struct sprof_uo_unwinder *u, uint64_t address) {
    size_t lo = 0, hi = u->map_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (u->maps[mid].start <= address) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const uo_map *m = &u->maps[lo - 1];
    return address < m->end ? m : NULL;
}

/* The mapping's image (NULL: none or unusable) and load bias. */
static uo_image *resolve(struct sprof_uo_unwinder *u, uo_map *m) {
    if (!m->resolved) {
        m->resolved = 1;
        if (m->source == SPROF_UO_SOURCE_FILE && m->path)
            m->image = uo_image_get(&u->cache, m->path, 0);
        else if (m->source == SPROF_UO_SOURCE_OWN_VDSO)
            m->image = uo_image_get(&u->cache, NULL, 1);
        if (m->image && m->image->bytes)
            m->bias_known = uo_image_bias(m->image, m->start, m->offset,
                                          (m->permissions & SPROF_UO_MAP_EXEC) != 0, &m->bias) == 0;
    }
    return m->image && m->image->bytes ? m->image : NULL;
}

static const char *map_name(const uo_map *m) {
    if (m->source == SPROF_UO_SOURCE_OWN_VDSO) return "our own vDSO";
    return m->path ? m->path : "(no file)";
}

/* libunwind searches .debug_frame only when built with --enable-debug-frame
 * (the default on ARM alone); Debian's x86-64 build is not, and does not
 * export dwarf_find_debug_frame(). */
static const char *debug_frame_note(const uo_image *image) {
    return image->has_debug_frame ? " (the file has .debug_frame, which this libunwind build cannot search)" : "";
}

/* --- Accessors ----------------------------------------------------------- */

static int uo_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi, int need_unwind_info,
                             void *arg) {
    struct sprof_uo_unwinder *u = arg;
    uo_map *m = (uo_map *)find_map(u, ip);
    if (!m) {
        fail(u, SPROF_UO_STOP_NO_MAPPING, ip, NULL, -1, NULL);
        return -UNW_EINVALIDIP;
    }
    uo_image *image = resolve(u, m);
    if (!image) {
        if (m->image) fail(u, SPROF_UO_STOP_BAD_FILE, ip, m, -1, "%s %s", map_name(m), m->image->problem);
        else fail(u, SPROF_UO_STOP_NO_FILE, ip, m, -1, NULL);
        return -UNW_EINVALIDIP;
    }
    if (!m->bias_known) {
        fail(u, SPROF_UO_STOP_BAD_FILE, ip, m, -1,
             "%s has no PT_LOAD holding file offset 0x%llx: not the file that was mapped", map_name(m),
             (unsigned long long)m->offset);
        return -UNW_EINVALIDIP;
    }
    u->current = m;

    if (image->table_state == UO_TABLE_OK) {
        unw_dyn_info_t di;
        memset(&di, 0, sizeof di);
        di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
        /* libunwind asserts start_ip <= ip < end_ip; the mapping is the
         * range we know the table applies to. */
        di.start_ip = m->start;
        di.end_ip = m->end;
        di.u.rti.segbase = image->hdr_vaddr + m->bias;
        di.u.rti.table_data = image->table_vaddr + m->bias;
        /* In words; each entry is two int32s, one word. */
        di.u.rti.table_len = image->fde_count * 8 / sizeof(unw_word_t);
        int ret = _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, u);
        if (ret != -UNW_ENOINFO) return ret;
        fail(u, SPROF_UO_STOP_NO_UNWIND_INFO, ip, m, -1, "%s: no FDE in .eh_frame_hdr covers stated address 0x%llx%s",
             map_name(m), (unsigned long long)(ip - m->bias), debug_frame_note(image));
    } else {
        fail(u, SPROF_UO_STOP_NO_UNWIND_INFO, ip, m, -1, "%s: %s%s", map_name(m), image->table_problem,
             debug_frame_note(image));
    }
    /* -UNW_ENOINFO sends libunwind to its frame-chain and PLT guesses
     * (what perf gets); anything else stops the walk here. */
    if (u->allow_heuristics) {
        u->step_had_no_info = 1;
        u->no_info = u->failure;
        return -UNW_ENOINFO;
    }
    return -UNW_EUNSPEC;
}

static void uo_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg) {
    /* Nothing: libunwind frees the dwarf info it allocated itself (the
     * callback is only for dynamic, UNW_INFO_FORMAT_DYNAMIC, info). */
    (void)as; (void)pi; (void)arg;
}

static int uo_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg) {
    /* No JIT registration list (_U_dyn_info_list) in a recorded process. */
    (void)as; (void)addr; (void)arg;
    return -UNW_ENOINFO;
}

static int uo_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *valp, int write, void *arg) {
    (void)as;
    struct sprof_uo_unwinder *u = arg;
    const sprof_uo_sample *s = u->sample;
    if (write) {
        fail(u, SPROF_UO_STOP_LIBUNWIND, addr, NULL, -1, "libunwind tried to write memory at 0x%llx",
             (unsigned long long)addr);
        return -UNW_EINVAL;
    }
    /* The captured stack: the whole word must be there. */
    if (addr >= s->sp && addr - s->sp <= s->stack_length && s->stack_length - (addr - s->sp) >= sizeof *valp) {
        memcpy(valp, s->stack + (addr - s->sp), sizeof *valp);
        return 0;
    }
    uo_map *m = (uo_map *)find_map(u, addr);
    if (m) {
        uo_image *image = resolve(u, m);
        if (image && uo_image_read(image, addr - m->start + m->offset, valp, sizeof *valp) == 0) return 0;
        const uo_map *stack_map = find_map(u, s->sp);
        if (m == stack_map) {
            fail(u, SPROF_UO_STOP_READ_OUTSIDE_STACK, addr, m, -1, NULL);
        } else {
            fail(u, SPROF_UO_STOP_READ_NO_BYTES, addr, m, -1, "%s", image ? "past the end of its file"
                 : m->image ? m->image->problem : "no file");
        }
        return -UNW_EINVAL;
    }
    /* In no mapping: perhaps a segment of the module being unwound whose
     * mapping the snapshot left out. */
    if (u->current && u->current->image) {
        uint64_t off;
        if (uo_image_offset_of(u->current->image, addr - u->current->bias, &off) == 0
            && uo_image_read(u->current->image, off, valp, sizeof *valp) == 0)
            return 0;
    }
    if (s->stack_length && addr >= s->sp - 4096 && addr < s->sp + s->stack_length + 4096)
        fail(u, SPROF_UO_STOP_READ_OUTSIDE_STACK, addr, NULL, -1, NULL);
    else
        fail(u, SPROF_UO_STOP_READ_UNMAPPED, addr, NULL, -1, NULL);
    return -UNW_EINVAL;
}

static int uo_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *valp, int write, void *arg) {
    (void)as;
    struct sprof_uo_unwinder *u = arg;
    if (!write) {
        switch (reg) {
        case UNW_X86_64_RIP: *valp = u->sample->ip; return 0;
        case UNW_X86_64_RSP: *valp = u->sample->sp; return 0;
        case UNW_X86_64_RBP: *valp = u->sample->bp; return 0;
        default: break;
        }
    }
    fail(u, SPROF_UO_STOP_UNKNOWN_REGISTER, 0, NULL, reg, "%s", write ? "libunwind tried to write it" : "");
    return -UNW_EBADREG;
}

static int uo_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write, void *arg) {
    (void)as; (void)val; (void)write;
    fail(arg, SPROF_UO_STOP_UNKNOWN_REGISTER, 0, NULL, reg, "floating-point registers are not captured");
    return -UNW_EBADREG;
}

static int uo_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg) {
    (void)as; (void)c; (void)arg;
    return -UNW_EINVAL;   /* a recording cannot be resumed */
}

static int uo_get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len, unw_word_t *offp,
                            void *arg) {
    (void)as; (void)addr; (void)buf; (void)len; (void)offp; (void)arg;
    return -UNW_ENOINFO;  /* symbols are SprofSymbols' business */
}

/* --- API ----------------------------------------------------------------- */

static void free_maps(struct sprof_uo_unwinder *u) {
    for (size_t i = 0; i < u->map_count; i++) free(u->maps[i].path);
    free(u->maps);
    u->maps = NULL;
    u->map_count = 0;
    u->current = NULL;
}

sprof_uo_unwinder *sprof_uo_create(int allow_heuristics) {
    struct sprof_uo_unwinder *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    static unw_accessors_t accessors = {
        .find_proc_info = uo_find_proc_info,
        .put_unwind_info = uo_put_unwind_info,
        .get_dyn_info_list_addr = uo_get_dyn_info_list_addr,
        .access_mem = uo_access_mem,
        .access_reg = uo_access_reg,
        .access_fpreg = uo_access_fpreg,
        .resume = uo_resume,
        .get_proc_name = uo_get_proc_name,
    };
    u->as = unw_create_addr_space(&accessors, 0 /* the host's byte order */);
    if (!u->as) { free(u); return NULL; }
    /* libunwind caches register-state rules by ip (as under perf, which
     * sets the same policy): five times faster on repeated stacks (30 us
     * to 6 us for a 7-frame sample). An ip means something else once the
     * mappings change, so sprof_uo_set_mappings() flushes the cache. */
    unw_set_caching_policy(u->as, UNW_CACHE_GLOBAL);
    u->allow_heuristics = allow_heuristics;
    return u;
}

void sprof_uo_destroy(sprof_uo_unwinder *u) {
    if (!u) return;
    free_maps(u);
    uo_image_cache_destroy(&u->cache);
    unw_destroy_addr_space(u->as);
    free(u);
}

static int by_start(const void *a, const void *b) {
    const uo_map *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

int sprof_uo_set_mappings(sprof_uo_unwinder *u, const sprof_uo_mapping *mappings, size_t count) {
    free_maps(u);
    unw_flush_cache(u->as, 0, 0);   /* 0, 0: every address */
    if (count == 0) return 0;
    u->maps = calloc(count, sizeof *u->maps);
    if (!u->maps) return -1;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const sprof_uo_mapping *g = &mappings[i];
        if (g->start >= g->end) continue;
        uo_map *m = &u->maps[n];
        m->start = g->start; m->end = g->end; m->offset = g->file_offset;
        m->permissions = g->permissions; m->source = g->source;
        m->given_index = (int64_t)i;
        if (g->source == SPROF_UO_SOURCE_FILE && g->path) {
            m->path = strdup(g->path);
            if (!m->path) { u->map_count = n; free_maps(u); return -1; }
        }
        n++;
    }
    u->map_count = n;
    qsort(u->maps, n, sizeof *u->maps, by_start);
    return 0;
}

/* Why the step that returned `code` failed. */
static void report(struct sprof_uo_unwinder *u, int code, sprof_uo_result *r) {
    r->unw_code = code;
    if (u->failure.set) {
        r->stop = u->failure.stop;
        r->address = u->failure.address;
        r->mapping_index = u->failure.mapping_index;
        r->register_number = u->failure.register_number;
        memcpy(r->detail, u->failure.detail, sizeof r->detail);
    } else {
        r->stop = SPROF_UO_STOP_LIBUNWIND;
        snprintf(r->detail, sizeof r->detail, "%s", unw_strerror(code));
    }
}

size_t sprof_uo_unwind(sprof_uo_unwinder *u, const sprof_uo_sample *sample, uint64_t *frames, size_t capacity,
                       sprof_uo_result *r) {
    memset(r, 0, sizeof *r);
    r->mapping_index = -1;
    r->register_number = -1;
    if (capacity == 0) { r->stop = SPROF_UO_STOP_FRAME_LIMIT; return 0; }

    u->sample = sample;
    u->current = NULL;
    memset(&u->failure, 0, sizeof u->failure);
    unw_cursor_t cursor;
    int ret = unw_init_remote(&cursor, u->as, u);
    if (ret < 0) { report(u, ret, r); u->sample = NULL; return 0; }

    frames[0] = sample->ip;
    size_t n = 1;
    for (;;) {
        if (n == capacity) { r->stop = SPROF_UO_STOP_FRAME_LIMIT; break; }
        memset(&u->failure, 0, sizeof u->failure);
        u->step_had_no_info = 0;
        ret = unw_step(&cursor);
        if (ret <= 0 && u->step_had_no_info) {
            /* No CFI, and libunwind's frame-chain guess found no caller
             * (returning 0 for that is not the end of the stack) or failed:
             * the missing CFI is the reason. */
            u->failure = u->no_info;
            report(u, ret, r);
            size_t used = strlen(r->detail);
            if (ret == 0)
                snprintf(r->detail + used, sizeof r->detail - used, "; libunwind's frame-chain guess found no caller");
            else
                snprintf(r->detail + used, sizeof r->detail - used, "; libunwind's frame-chain guess failed: %s",
                         unw_strerror(ret));
            break;
        }
        if (ret == 0) { r->stop = SPROF_UO_STOP_END_OF_STACK; break; }
        if (ret < 0) { report(u, ret, r); break; }
        if (u->step_had_no_info) r->heuristic_steps++;
        unw_word_t ip = 0;
        ret = unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (ret < 0) { report(u, ret, r); break; }
        if (ip == 0) { r->stop = SPROF_UO_STOP_ZERO_RETURN_ADDRESS; break; }
        frames[n++] = ip;
    }
    u->sample = NULL;
    return n;
}

size_t sprof_uo_cached_file_count(const sprof_uo_unwinder *u) {
    return u->cache.count;
}
