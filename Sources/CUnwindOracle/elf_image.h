/*
 * The ELF files behind a sample's mappings, as the oracle's accessors need
 * them: bytes by file offset, the PT_LOAD segments (to find a mapping's load
 * bias) and the .eh_frame_hdr binary-search table. Private to CUnwindOracle.
 */
#ifndef SPROF_UO_ELF_IMAGE_H
#define SPROF_UO_ELF_IMAGE_H

#include <elf.h>
#include <stddef.h>
#include <stdint.h>

/* Where the unwind table of an image stands. */
typedef enum {
    UO_TABLE_OK = 0,
    /* Neither PT_GNU_EH_FRAME nor a .eh_frame_hdr section. */
    UO_TABLE_ABSENT = 1,
    /* There is one, but libunwind cannot search it: `problem` says why. */
    UO_TABLE_UNUSABLE = 2,
} uo_table_state;

typedef struct uo_image {
    char *key;                 /* the path, or "\x01vdso" for our own vDSO */
    struct uo_image *next;     /* hash-bucket chain */

    /* The whole file, read-only; NULL when it could not be had (`problem`). */
    const uint8_t *bytes;
    size_t size;
    int is_mmap;               /* munmap (else free) on destroy */
    char problem[160];

    Elf64_Phdr *loads;         /* PT_LOAD program headers, in file order */
    size_t load_count;

    /* The .eh_frame_hdr (LSB, "Exception Frame Header"): where it is as
     * the file states it, and its table of (initial location, FDE address)
     * pairs, both encoded DW_EH_PE_datarel | DW_EH_PE_sdata4 relative to
     * the header's start. */
    uo_table_state table_state;
    char table_problem[160];
    uint64_t hdr_vaddr;        /* stated address of .eh_frame_hdr */
    uint64_t table_vaddr;      /* stated address of its first table entry */
    uint64_t fde_count;
    int has_debug_frame;       /* a .debug_frame section exists */
} uo_image;

typedef struct {
    uo_image *buckets[512];    /* a few hundred files per recording; chains stay short */
    size_t count;
} uo_image_cache;

/* The image for `path` (or our vDSO when `own_vdso`), mapped on first use.
 * Never NULL unless out of memory; an unusable file comes back with
 * `bytes == NULL` and `problem` set, and stays cached that way. */
uo_image *uo_image_get(uo_image_cache *cache, const char *path, int own_vdso);
void uo_image_cache_destroy(uo_image_cache *cache);

/* The load bias (process address - stated address) of the image mapped at
 * `start` from file offset `offset`: the PT_LOAD whose file range holds
 * `offset` (preferring one that starts on that page, then one whose PF_X
 * matches `executable`) fixes it. Returns 0, or -1 when no PT_LOAD holds
 * `offset` (the file is not the one that was mapped). */
int uo_image_bias(const uo_image *image, uint64_t start, uint64_t offset, int executable, uint64_t *bias);

/* The file offset of stated address `vaddr`, if a PT_LOAD has file bytes
 * for it. Returns 0 or -1. */
int uo_image_offset_of(const uo_image *image, uint64_t vaddr, uint64_t *offset);

/* Reads `length` bytes at file offset `offset`; bytes past the end of the
 * file read as zero, but at least the first must be inside. Returns 0 or -1. */
int uo_image_read(const uo_image *image, uint64_t offset, void *out, size_t length);

#endif
