/*
 * ELF images for the libunwind oracle: mapped once per path, parsed just
 * enough to find load biases and the .eh_frame_hdr search table.
 *
 * Formats: the ELF-64 object file format (System V gABI, "Program Header",
 * "Sections"); .eh_frame_hdr and the DW_EH_PE_* pointer encodings from the
 * Linux Standard Base Core Specification, "Exception Frames".
 */
#define _GNU_SOURCE
#include "elf_image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* x86_64 pages: the kernel maps a segment from its page-aligned file offset. */
#define UO_PAGE_SIZE 4096u

/* The key under which our own vDSO is cached: no path starts with \x01. */
static const char own_vdso_key[] = "\x01vdso";

/* DW_EH_PE_* (LSB "DWARF Exception Header Encoding"): the low nibble is the
 * value's format, the high nibble how it is applied. */
enum {
    DW_EH_PE_absptr = 0x00,
    DW_EH_PE_uleb128 = 0x01,
    DW_EH_PE_udata2 = 0x02,
    DW_EH_PE_udata4 = 0x03,
    DW_EH_PE_udata8 = 0x04,
    DW_EH_PE_sleb128 = 0x09,
    DW_EH_PE_sdata2 = 0x0a,
    DW_EH_PE_sdata4 = 0x0b,
    DW_EH_PE_sdata8 = 0x0c,
    DW_EH_PE_datarel = 0x30,
    DW_EH_PE_omit = 0xff,
};

/* FNV-1a, 64-bit (offset basis and prime from the FNV reference). */
static uint64_t hash_key(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) { h ^= (uint8_t)*s; h *= 0x100000001b3ull; }
    return h;
}

int uo_image_read(const uo_image *image, uint64_t offset, void *out, size_t length) {
    if (!image->bytes || offset >= image->size) return -1;
    size_t available = image->size - (size_t)offset;
    size_t n = length < available ? length : available;
    memcpy(out, image->bytes + offset, n);
    if (n < length) memset((uint8_t *)out + n, 0, length - n);
    return 0;
}

/* Reads exactly `length` bytes, all inside the file. */
static int read_exact(const uo_image *image, uint64_t offset, void *out, size_t length) {
    if (offset > image->size || length > image->size - offset) return -1;
    memcpy(out, image->bytes + offset, length);
    return 0;
}

/* One DW_EH_PE-encoded value at *offset (its format only: the caller knows
 * how it applies). Advances *offset. Returns 0 or -1. */
static int read_encoded(const uo_image *image, uint64_t *offset, uint8_t encoding, uint64_t *value) {
    uint8_t b1[1];
    uint16_t u16; uint32_t u32; uint64_t u64;
    switch (encoding & 0x0f) {
    case DW_EH_PE_absptr:
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8:
        if (read_exact(image, *offset, &u64, 8) < 0) return -1;
        *value = u64; *offset += 8; return 0;
    case DW_EH_PE_udata4:
        if (read_exact(image, *offset, &u32, 4) < 0) return -1;
        *value = u32; *offset += 4; return 0;
    case DW_EH_PE_sdata4:
        if (read_exact(image, *offset, &u32, 4) < 0) return -1;
        *value = (uint64_t)(int64_t)(int32_t)u32; *offset += 4; return 0;
    case DW_EH_PE_udata2:
        if (read_exact(image, *offset, &u16, 2) < 0) return -1;
        *value = u16; *offset += 2; return 0;
    case DW_EH_PE_sdata2:
        if (read_exact(image, *offset, &u16, 2) < 0) return -1;
        *value = (uint64_t)(int64_t)(int16_t)u16; *offset += 2; return 0;
    case DW_EH_PE_uleb128:
    case DW_EH_PE_sleb128: {
        uint64_t v = 0;
        unsigned shift = 0;
        for (;;) {
            if (read_exact(image, *offset, b1, 1) < 0) return -1;
            *offset += 1;
            if (shift < 64) v |= (uint64_t)(b1[0] & 0x7f) << shift;
            shift += 7;
            if (!(b1[0] & 0x80)) break;
            if (shift > 70) return -1;   /* longer than any 64-bit value */
        }
        if ((encoding & 0x0f) == DW_EH_PE_sleb128 && shift < 64 && (b1[0] & 0x40)) v |= ~0ull << shift;
        *value = v;
        return 0;
    }
    default:
        return -1;
    }
}

static void set_table_problem(uo_image *image, uo_table_state state, const char *fmt, unsigned a, unsigned b) {
    image->table_state = state;
    snprintf(image->table_problem, sizeof image->table_problem, fmt, a, b);
}

/* Parses the .eh_frame_hdr at file offset `off`, `size` bytes, stated
 * address `vaddr`. Layout (LSB): u8 version (1), u8 eh_frame_ptr_enc,
 * u8 fde_count_enc, u8 table_enc, encoded eh_frame_ptr, encoded fde_count,
 * then fde_count pairs encoded with table_enc. */
static void parse_eh_frame_hdr(uo_image *image, uint64_t off, uint64_t size, uint64_t vaddr) {
    uint8_t head[4];
    if (size < 4 || read_exact(image, off, head, 4) < 0) {
        set_table_problem(image, UO_TABLE_UNUSABLE, ".eh_frame_hdr is cut short (%u bytes)", (unsigned)size, 0);
        return;
    }
    if (head[0] != 1) {
        set_table_problem(image, UO_TABLE_UNUSABLE, ".eh_frame_hdr has version %u, not 1", head[0], 0);
        return;
    }
    uint64_t p = off + 4, ignored, count;
    if (head[1] == DW_EH_PE_omit || read_encoded(image, &p, head[1], &ignored) < 0) {
        set_table_problem(image, UO_TABLE_UNUSABLE, ".eh_frame_hdr eh_frame_ptr encoding 0x%x is unreadable", head[1], 0);
        return;
    }
    if (head[2] == DW_EH_PE_omit || head[3] == DW_EH_PE_omit) {
        set_table_problem(image, UO_TABLE_UNUSABLE,
                          ".eh_frame_hdr has no binary-search table (fde_count encoding 0x%x, table encoding 0x%x)",
                          head[2], head[3]);
        return;
    }
    if (read_encoded(image, &p, head[2], &count) < 0) {
        set_table_problem(image, UO_TABLE_UNUSABLE, ".eh_frame_hdr fde_count encoding 0x%x is unreadable", head[2], 0);
        return;
    }
    /* libunwind's remote lookup reads entries as two int32 offsets from
     * the header (struct table_entry in Gfind_proc_info-lsb.c). */
    if (head[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4)) {
        set_table_problem(image, UO_TABLE_UNUSABLE,
                          ".eh_frame_hdr table encoding is 0x%x; libunwind reads only datarel|sdata4 (0x%x)",
                          head[3], DW_EH_PE_datarel | DW_EH_PE_sdata4);
        return;
    }
    uint64_t table_off = p - off;
    if (count > (size - table_off) / 8) {
        set_table_problem(image, UO_TABLE_UNUSABLE, ".eh_frame_hdr claims %u entries but has room for %u",
                          (unsigned)count, (unsigned)((size - table_off) / 8));
        return;
    }
    image->table_state = UO_TABLE_OK;
    image->hdr_vaddr = vaddr;
    image->table_vaddr = vaddr + table_off;
    image->fde_count = count;
}

static void set_problem(uo_image *image, const char *fmt, unsigned long a) {
    snprintf(image->problem, sizeof image->problem, fmt, a);
}

/* Headers, PT_LOADs, the unwind table. On failure sets `problem` (the
 * caller then drops the bytes). */
static int parse(uo_image *image) {
    Elf64_Ehdr eh;
    if (read_exact(image, 0, &eh, sizeof eh) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        set_problem(image, "not an ELF file (%lu bytes)", (unsigned long)image->size);
        return -1;
    }
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64) {
        set_problem(image, "not a 64-bit little-endian x86-64 ELF file (e_machine %lu)", eh.e_machine);
        return -1;
    }

    /* Section headers, when present: e_shnum 0 means the count is in
     * section 0's sh_size, e_shstrndx SHN_XINDEX that the index is in its
     * sh_link (gABI "Sections"). */
    uint64_t shnum = 0, shstrndx = eh.e_shstrndx;
    Elf64_Shdr sh0;
    int have_sections = eh.e_shoff != 0 && eh.e_shentsize == sizeof(Elf64_Shdr)
        && read_exact(image, eh.e_shoff, &sh0, sizeof sh0) == 0;
    if (have_sections) {
        shnum = eh.e_shnum ? eh.e_shnum : sh0.sh_size;
        if (shstrndx == SHN_XINDEX) shstrndx = sh0.sh_link;
        if (shnum > (image->size - eh.e_shoff) / sizeof(Elf64_Shdr)) have_sections = 0;
    }

    /* Program headers; e_phnum PN_XNUM means the count is in section 0's sh_info. */
    uint64_t phnum = eh.e_phnum;
    if (phnum == PN_XNUM && have_sections) phnum = sh0.sh_info;
    if (eh.e_phoff == 0 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > image->size
        || phnum > (image->size - eh.e_phoff) / sizeof(Elf64_Phdr)) {
        set_problem(image, "has no readable program headers (%lu claimed)", (unsigned long)phnum);
        return -1;
    }
    image->loads = calloc(phnum ? phnum : 1, sizeof(Elf64_Phdr));
    if (!image->loads) { set_problem(image, "out of memory (%lu program headers)", (unsigned long)phnum); return -1; }
    int have_hdr_segment = 0;
    Elf64_Phdr hdr_segment;
    for (uint64_t i = 0; i < phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image->bytes + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD) image->loads[image->load_count++] = ph;
        if (ph.p_type == PT_GNU_EH_FRAME && !have_hdr_segment) { hdr_segment = ph; have_hdr_segment = 1; }
    }
    if (image->load_count == 0) {
        set_problem(image, "has no PT_LOAD segment (%lu program headers)", (unsigned long)phnum);
        return -1;
    }

    /* Sections by name: .eh_frame_hdr when there is no PT_GNU_EH_FRAME,
     * .debug_frame to say why it does not help. */
    int have_hdr_section = 0;
    Elf64_Shdr hdr_section;
    if (have_sections && shstrndx < shnum) {
        Elf64_Shdr strtab;
        memcpy(&strtab, image->bytes + eh.e_shoff + shstrndx * sizeof strtab, sizeof strtab);
        int strtab_ok = strtab.sh_type != SHT_NOBITS && strtab.sh_offset <= image->size
            && strtab.sh_size <= image->size - strtab.sh_offset;
        for (uint64_t i = 1; strtab_ok && i < shnum; i++) {
            Elf64_Shdr sh;
            memcpy(&sh, image->bytes + eh.e_shoff + i * sizeof sh, sizeof sh);
            if (sh.sh_name >= strtab.sh_size) continue;
            const char *name = (const char *)image->bytes + strtab.sh_offset + sh.sh_name;
            size_t room = strtab.sh_size - sh.sh_name;
            if (strnlen(name, room) == room) continue;   /* not NUL-terminated */
            if (strcmp(name, ".debug_frame") == 0 && sh.sh_type != SHT_NOBITS) image->has_debug_frame = 1;
            if (strcmp(name, ".eh_frame_hdr") == 0 && sh.sh_type != SHT_NOBITS && !have_hdr_section) {
                hdr_section = sh;
                have_hdr_section = 1;
            }
        }
    }

    if (have_hdr_segment) {
        parse_eh_frame_hdr(image, hdr_segment.p_offset, hdr_segment.p_filesz, hdr_segment.p_vaddr);
    } else if (have_hdr_section) {
        parse_eh_frame_hdr(image, hdr_section.sh_offset, hdr_section.sh_size, hdr_section.sh_addr);
    } else {
        set_table_problem(image, UO_TABLE_ABSENT, "no .eh_frame_hdr (neither PT_GNU_EH_FRAME nor the section)", 0, 0);
    }
    return 0;
}

/* Maps the file read-only. */
static void load_file(uo_image *image, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(image->problem, sizeof image->problem, "cannot be opened: %s", strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(image->problem, sizeof image->problem, "cannot be examined: %s", strerror(errno));
        close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
        set_problem(image, "is not a regular, non-empty file (%lu bytes)", (unsigned long)st.st_size);
        close(fd);
        return;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) { snprintf(image->problem, sizeof image->problem, "cannot be mapped: %s", strerror(e)); return; }
    image->bytes = p;
    image->size = (size_t)st.st_size;
    image->is_mmap = 1;
}

/* Copies our own vDSO: the image the kernel maps into every process, so the
 * same bytes as in the recorded process when recorded on this boot. Its
 * size is where its headers say it ends. */
static void load_own_vdso(uo_image *image) {
    const uint8_t *base = (const uint8_t *)getauxval(AT_SYSINFO_EHDR);
    if (!base) { set_problem(image, "this process has no vDSO (AT_SYSINFO_EHDR is %lu)", 0); return; }
    Elf64_Ehdr eh;
    memcpy(&eh, base, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_phentsize != sizeof(Elf64_Phdr)) {
        set_problem(image, "our vDSO has an unexpected ELF header (e_phentsize %lu)", eh.e_phentsize);
        return;
    }
    uint64_t end = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, base + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD && ph.p_offset + ph.p_filesz > end) end = ph.p_offset + ph.p_filesz;
    }
    /* The kernel's vDSO is a few pages; anything bigger is a misreading. */
    if (end < sizeof eh || end > (1u << 20)) { set_problem(image, "our vDSO claims %lu bytes", (unsigned long)end); return; }
    uint8_t *copy = malloc(end);
    if (!copy) { set_problem(image, "out of memory copying our %lu-byte vDSO", (unsigned long)end); return; }
    memcpy(copy, base, end);
    image->bytes = copy;
    image->size = end;
    image->is_mmap = 0;
}

static void release_bytes(uo_image *image) {
    if (!image->bytes) return;
    if (image->is_mmap) munmap((void *)image->bytes, image->size);
    else free((void *)image->bytes);
    image->bytes = NULL;
    image->size = 0;
}

uo_image *uo_image_get(uo_image_cache *cache, const char *path, int own_vdso) {
    const char *key = own_vdso ? own_vdso_key : path;
    uint64_t h = hash_key(key) % (sizeof cache->buckets / sizeof cache->buckets[0]);
    for (uo_image *i = cache->buckets[h]; i; i = i->next)
        if (strcmp(i->key, key) == 0) return i;

    uo_image *image = calloc(1, sizeof *image);
    if (!image) return NULL;
    image->key = strdup(key);
    if (!image->key) { free(image); return NULL; }
    if (own_vdso) load_own_vdso(image); else load_file(image, path);
    if (image->bytes && parse(image) < 0) release_bytes(image);
    image->next = cache->buckets[h];
    cache->buckets[h] = image;
    cache->count++;
    return image;
}

void uo_image_cache_destroy(uo_image_cache *cache) {
    for (size_t b = 0; b < sizeof cache->buckets / sizeof cache->buckets[0]; b++) {
        uo_image *i = cache->buckets[b];
        while (i) {
            uo_image *next = i->next;
            release_bytes(i);
            free(i->loads);
            free(i->key);
            free(i);
            i = next;
        }
        cache->buckets[b] = NULL;
    }
    cache->count = 0;
}

int uo_image_bias(const uo_image *image, uint64_t start, uint64_t offset, int executable, uint64_t *bias) {
    const Elf64_Phdr *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < image->load_count; i++) {
        const Elf64_Phdr *ph = &image->loads[i];
        uint64_t first_page = ph->p_offset & ~(uint64_t)(UO_PAGE_SIZE - 1);
        if (offset < first_page || offset >= ph->p_offset + ph->p_filesz) continue;
        /* Old layouts share a page between segments; the mapping's own
         * start page and its permissions tell them apart. */
        int score = (first_page == offset ? 2 : 0) + (!!(ph->p_flags & PF_X) == !!executable ? 1 : 0);
        if (score > best_score) { best = ph; best_score = score; }
    }
    if (!best) return -1;
    /* The mapping's first byte is file offset `offset`, which the segment
     * puts at stated address p_vaddr + (offset - p_offset). */
    *bias = start - (best->p_vaddr + (offset - best->p_offset));
    return 0;
}

int uo_image_offset_of(const uo_image *image, uint64_t vaddr, uint64_t *offset) {
    for (size_t i = 0; i < image->load_count; i++) {
        const Elf64_Phdr *ph = &image->loads[i];
        if (vaddr >= ph->p_vaddr && vaddr - ph->p_vaddr < ph->p_filesz) {
            *offset = ph->p_offset + (vaddr - ph->p_vaddr);
            return 0;
        }
    }
    return -1;
}
