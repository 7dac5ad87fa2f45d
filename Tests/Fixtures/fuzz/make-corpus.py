#!/usr/bin/env python3
"""Writes the hand-crafted hostile inputs of the fuzz regression corpus.

    python3 Tests/Fixtures/fuzz/make-corpus.py      (from anywhere; rewrites the crafted-* files)

Each file is small (< 8 KB) and aims at one way a file another process
controls can lie: offsets past the end, counts that do not fit, sizes that
wrap, indices out of range, notes that overrun their area, DIEs nested
thousands deep. The ELF files are built from scratch here (ELF64, little
endian, x86-64) following the gABI layouts; the DWARF is DWARF 4 (DWARF 4
standard §7.5: unit header, abbreviations, forms). See README.md for the
other files (inputs the fuzzer found, truncated real binaries).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 1, 2, 3, 4, 7, 8, 11
SHF_ALLOC, SHF_EXEC = 2, 4
PT_LOAD, PT_NOTE = 1, 4


class Section:
    def __init__(self, name, type, data=b"", flags=0, addr=0, link=0, info=0, align=1, entsize=0,
                 offset=None, size=None):
        self.name, self.type, self.data, self.flags, self.addr = name, type, data, flags, addr
        self.link, self.info, self.align, self.entsize = link, info, align, entsize
        self.offset, self.size = offset, size


def elf(sections=(), segments=(), *, shoff=None, shnum=None, shstrndx=None, phnum=None, phentsize=56,
        shentsize=64, section0=(0, 0, 0), machine=62, etype=3, strtab_terminated=True):
    """An ELF64 file: header, program headers, section bytes, .shstrtab, section headers.

    segments: (p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align) tuples.
    section0: (sh_size, sh_link, sh_info) of the reserved section 0 (extended numbering).
    Offsets left as None are laid out; numbers given override the computed ones.
    """
    names = b"\0"
    name_offsets = []
    for s in list(sections) + [Section(".shstrtab", SHT_STRTAB)]:
        name_offsets.append(len(names))
        names += s.name.encode() + b"\0"
    if not strtab_terminated:
        names = names[:-1]
    all_sections = list(sections) + [Section(".shstrtab", SHT_STRTAB, names)]
    body = bytearray(64 + 56 * len(segments))
    offsets = []
    for s in all_sections:
        while len(body) % 8:
            body.append(0)
        offsets.append(len(body) if s.offset is None else s.offset)
        if s.type != SHT_NOBITS:
            body += s.data
    while len(body) % 8:
        body.append(0)
    table = len(body)
    headers = bytearray(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, section0[0], section0[1], section0[2], 0, 0))
    for s, name, off in zip(all_sections, name_offsets, offsets):
        size = s.size if s.size is not None else len(s.data)
        headers += struct.pack("<IIQQQQIIQQ", name, s.type, s.flags, s.addr, off, size, s.link, s.info, s.align,
                               s.entsize)
    body += headers
    assert len(body) == table + len(headers)
    count = len(all_sections) + 1
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", etype, machine, 1, 0, 64 if segments else 0,
                                 table if shoff is None else shoff, 0, 64, phentsize,
                                 len(segments) if phnum is None else phnum, shentsize,
                                 count if shnum is None else shnum,
                                 count - 1 if shstrndx is None else shstrndx)
    body[0:64] = header
    for i, p in enumerate(segments):
        type, flags, offset, vaddr, filesz, memsz, align = p
        body[64 + 56 * i:64 + 56 * (i + 1)] = struct.pack("<IIQQQQQQ", type, flags, offset, vaddr, vaddr, filesz, memsz,
                                                          align)
    return bytes(body)


def note(name, type, desc, align=4):
    def pad(b):
        return b + bytes((-len(b)) % align)
    n = name.encode() + b"\0" if name else b""
    return struct.pack("<III", len(n), len(desc), type) + pad(n) + pad(desc)


def sym(name, info, shndx, value, size):
    return struct.pack("<IBBHQQ", name, info, 0, shndx, value, size)


FUNC_GLOBAL, FUNC_LOCAL, FUNC_WEAK, IFUNC = 0x12, 0x02, 0x22, 0x1a
TEXT = Section(".text", SHT_PROGBITS, b"\xc3" * 64, flags=SHF_ALLOC | SHF_EXEC, addr=0x1000, align=16)


def write(target, name, data):
    assert len(data) < 8192, (target, name, len(data))
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "crafted-" + name), "wb") as f:
        f.write(data)


def elf_cases():
    build_id = Section(".note.gnu.build-id", SHT_NOTE, note("GNU", 3, bytes(range(20))), flags=SHF_ALLOC, align=4)
    good = elf([TEXT, build_id], [(PT_LOAD, 5, 0, 0, 0x200, 0x200, 0x1000)])
    write("elf", "valid-minimal", good)
    write("elf", "shoff-past-eof", elf([TEXT], shoff=0x7fff_ffff_0000))
    write("elf", "shoff-wraps", elf([TEXT], shoff=0xffff_ffff_ffff_ffc0))
    write("elf", "shnum-extended-huge", elf([TEXT], shnum=0, section0=(1 << 40, 0, 0)))
    write("elf", "shnum-65535", elf([TEXT], shnum=0xffff))
    write("elf", "phnum-xnum-huge", elf([TEXT], [(PT_LOAD, 5, 0, 0, 0x100, 0x100, 0x1000)], phnum=0xffff,
                                        section0=(0, 0, 0xffff_ffff)))
    write("elf", "shstrndx-xindex-huge", elf([TEXT], shstrndx=0xffff, section0=(0, 0x7fff_ffff, 0)))
    write("elf", "shstrndx-past-table", elf([TEXT], shstrndx=0xfffe))
    write("elf", "shentsize-small", elf([TEXT], shentsize=8))
    write("elf", "phentsize-huge", elf([TEXT], [(PT_LOAD, 5, 0, 0, 0x100, 0x100, 0x1000)], phentsize=0xffff,
                                       phnum=0xfffe))
    write("elf", "section-offset-past-eof", elf([Section(".text", SHT_PROGBITS, flags=SHF_EXEC, offset=0xffff_fff0,
                                                         size=0x100), build_id]))
    write("elf", "section-size-wraps", elf([Section(".eh_frame", SHT_PROGBITS, offset=0x40,
                                                    size=0xffff_ffff_ffff_ffd0), build_id]))
    write("elf", "shstrtab-unterminated", elf([TEXT, Section(".gnu_debuglink", SHT_PROGBITS, b"x.debug\0" + b"\1\2\3\4")],
                                              strtab_terminated=False))
    write("elf", "note-namesz-huge", elf([Section(".note.a", SHT_NOTE, struct.pack("<III", 0xffff_ffff, 4, 3) + b"GNU\0",
                                                  align=4)]))
    write("elf", "note-descsz-huge", elf([Section(".note.a", SHT_NOTE, struct.pack("<III", 4, 0xffff_fff0, 3) + b"GNU\0",
                                                  align=8)]))
    write("elf", "notes-many-empty", elf([Section(".note.a", SHT_NOTE, struct.pack("<III", 0, 0, 3) * 600, align=4)]))
    write("elf", "note-header-cut", elf([Section(".note.a", SHT_NOTE, note("GNU", 3, b"\1\2\3\4") + b"\0" * 7, align=4)]))
    write("elf", "note-area-past-eof", elf([], [(PT_NOTE, 4, 0xffff_ffff_ffff_0000, 0, 0x20000, 0x20000, 4),
                                                 (PT_LOAD, 5, 0, 0, 0x100, 0x100, 0x1000)], shoff=0, shnum=0,
                                           shstrndx=0))
    write("elf", "note-segment-odd-align", elf([], [(PT_NOTE, 4, 64 + 56, 0, 0x40, 0x40, 8)], shoff=0, shnum=0,
                                               shstrndx=0) + note("GNU", 3, b"\xaa" * 13, align=8))
    # 100 note sections over the same 1 KB of notes: reading each once cost
    # O(headers x file size); the iterator now stops past the file's size.
    area = note("Go", 4, b"\0" * 16) * 32
    overlapping = [Section("", SHT_NOTE, area, align=4)]
    overlapping += [Section("", SHT_NOTE, offset=64, size=len(area), align=4) for _ in range(99)]
    write("elf", "notes-overlapping", elf(overlapping))
    write("elf", "debuglink-no-nul", elf([Section(".gnu_debuglink", SHT_PROGBITS, b"abcdefgh")]))
    write("elf", "debuglink-short-crc", elf([Section(".gnu_debuglink", SHT_PROGBITS, b"a.debug\0\1\2")]))
    write("elf", "debuglink-empty-name", elf([Section(".gnu_debuglink", SHT_PROGBITS, b"\0\0\0\0\1\2\3\4")]))
    write("elf", "load-segments-wrap", elf([TEXT], [
        (PT_LOAD, 5, 0xffff_ffff_ffff_f000, 0xffff_ffff_ffff_f000, 0x2000, 0x2000, 0x1000),
        (PT_LOAD, 5, 0, 0xffff_ffff_ffff_ff00, 0xffff_ffff_ffff_ffff, 0, 0),
        (PT_LOAD, 6, 0x80, 0x80, 0x10, 0x10, 3),
        (PT_LOAD, 4, 0x80, 0x2000, 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff, 1 << 63)]))


def symtab_cases():
    strtab = b"\0main\0helper\0"
    def with_symtab(symbols, strings=strtab, **kw):
        symtab = Section(".symtab", SHT_SYMTAB, b"\0" * 24 + b"".join(symbols), link=kw.pop("link", 3),
                         entsize=kw.pop("entsize", 24), size=kw.pop("size", None), offset=kw.pop("offset", None),
                         align=8)
        return elf([TEXT, symtab, Section(".strtab", SHT_STRTAB, strings)],
                   [(PT_LOAD, 5, 0, 0x1000 - 0x40, 0x200, 0x200, 0x1000)], **kw)
    write("symtab", "valid-two", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16), sym(6, FUNC_LOCAL, 1, 0x1010, 0)]))
    write("symtab", "name-past-strtab", with_symtab([sym(0xffff_ffff, FUNC_GLOBAL, 1, 0x1000, 16)]))
    write("symtab", "name-at-end-unterminated", with_symtab([sym(4, FUNC_GLOBAL, 1, 0x1000, 16)], strings=b"\0abcd"))
    write("symtab", "strtab-empty", with_symtab([sym(0, FUNC_GLOBAL, 1, 0x1000, 16)], strings=b""))
    write("symtab", "link-out-of-range", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16)], link=0xffff_ffff))
    write("symtab", "link-not-strtab", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16)], link=2))
    write("symtab", "entsize-wrong", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16)], entsize=16))
    write("symtab", "size-not-multiple", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16)], size=49))
    write("symtab", "symtab-past-eof", with_symtab([sym(1, FUNC_GLOBAL, 1, 0x1000, 16)], offset=0x10_0000, size=48))
    write("symtab", "value-wraps", with_symtab([
        sym(1, FUNC_GLOBAL, 1, 0xffff_ffff_ffff_fff0, 0x100), sym(6, FUNC_GLOBAL, 1, 0xffff_ffff_ffff_ffff, 0),
        sym(1, IFUNC, 0xfff1, 0, 0xffff_ffff_ffff_ffff), sym(6, FUNC_WEAK, 0xffff, 0x1000, 0)]))
    # The lookup that used to walk back symbol by symbol: one symbol covering
    # everything, then many small ones it encloses, then many aliases.
    many = [sym(1, FUNC_GLOBAL, 1, 0, 0xffff_ffff_ffff_ffff)]
    many += [sym(6, FUNC_LOCAL, 1, 0x1000 + 4 * i, 1) for i in range(150)]
    many += [sym(6 if i % 2 else 1, FUNC_WEAK, 1, 0x2000, i % 3) for i in range(150)]
    write("symtab", "enclosing-many", with_symtab(many))
    # PLT: relocations naming symbols out of range, a .plt shorter than an entry,
    # a jump at the very end of the section.
    dynstr = b"\0puts\0"
    dynsym = Section(".dynsym", SHT_DYNSYM, b"\0" * 24 + sym(1, 0x12, 0, 0, 0) + sym(0xffff, 0x12, 0, 0, 0),
                     flags=SHF_ALLOC, link=2, entsize=24, align=8)
    rela = b"".join(struct.pack("<QQq", off, info, 0) for off, info in [
        (0x3000, (1 << 32) | 7), (0x3008, (0xffff_ffff << 32) | 7), (0x3010, (2 << 32) | 6), (0x3018, 37),
        (0x3020, (0 << 32) | 7)])
    plt = b"\xff\x35" + b"\0" * 14 + b"\xf3\x0f\x1e\xfa\xf2\xff\x25" + struct.pack("<i", 0x3000 - 0x2010 - 11) + b"\0" * 5 \
        + b"\0" * 10 + b"\xff\x25"
    # The same relocations and PLT bytes named by 40 headers each.
    plt16 = b"".join(b"\xff\x25" + struct.pack("<i", 0x3000 - (0x2000 + 16 * i + 6)) + b"\0" * 10 for i in range(16))
    rela16 = b"".join(struct.pack("<QQq", 0x3000, (1 << 32) | 7, 0) for _ in range(16))
    many_plt = [dynsym, Section(".dynstr", SHT_STRTAB, dynstr),
                Section(".plt", SHT_PROGBITS, plt16, flags=SHF_ALLOC | SHF_EXEC, addr=0x2000, align=16),
                Section(".rela.plt", SHT_RELA, rela16, link=1, entsize=24, align=8)]
    plt_offset = 64 + 72 + 8  # after the header, .dynsym (72 bytes) and .dynstr (6, padded to 8)
    many_plt += [Section(".plt", SHT_PROGBITS, flags=SHF_ALLOC | SHF_EXEC, addr=0x2000, offset=plt_offset, size=256)
                 for _ in range(40)]
    many_plt += [Section(".rela.plt", SHT_RELA, link=1, entsize=24, offset=plt_offset + 256, size=len(rela16))
                 for _ in range(40)]
    write("symtab", "plt-overlapping", elf(many_plt))
    write("symtab", "plt-hostile", elf([dynsym, Section(".dynstr", SHT_STRTAB, dynstr),
                                        Section(".rela.plt", SHT_RELA, rela, link=1, entsize=24, align=8),
                                        Section(".plt", SHT_PROGBITS, plt, flags=SHF_ALLOC | SHF_EXEC, addr=0x2000),
                                        Section(".plt.got", SHT_PROGBITS, b"\xff\x25\0", flags=SHF_ALLOC | SHF_EXEC,
                                                addr=0x2100, entsize=8)]))


# DWARF 4 (DWARF 4 standard §7.5): abbreviation codes, tags, attributes, forms.
DW_TAG_compile_unit, DW_TAG_subprogram, DW_TAG_inlined_subroutine, DW_TAG_namespace = 0x11, 0x2e, 0x1d, 0x39
DW_AT_name, DW_AT_low_pc, DW_AT_high_pc, DW_AT_stmt_list = 0x03, 0x11, 0x12, 0x10
DW_AT_call_file, DW_AT_call_line, DW_AT_abstract_origin, DW_AT_specification = 0x58, 0x59, 0x31, 0x47
DW_FORM_addr, DW_FORM_data4, DW_FORM_data8, DW_FORM_string, DW_FORM_ref4, DW_FORM_sec_offset = 0x01, 0x06, 0x07, 0x08, 0x13, 0x17


def uleb(v):
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def abbrev(code, tag, children, attrs):
    return uleb(code) + uleb(tag) + bytes([1 if children else 0]) + b"".join(uleb(a) + uleb(f) for a, f in attrs) + b"\0\0"


def dwarf_elf(abbrevs, dies, line=None):
    unit = struct.pack("<HIB", 4, 0, 8) + dies
    info = struct.pack("<I", len(unit)) + unit
    sections = [Section(".text", SHT_PROGBITS, b"\xc3" * 0x100, flags=SHF_ALLOC | SHF_EXEC, addr=0x1000, align=16),
                Section(".debug_info", SHT_PROGBITS, info), Section(".debug_abbrev", SHT_PROGBITS, abbrevs + b"\0")]
    if line is not None:
        sections.append(Section(".debug_line", SHT_PROGBITS, line))
    return elf(sections, [(PT_LOAD, 5, 0, 0x1000 - 0x40, 0x100, 0x100, 0x1000)])


def line_table():
    """A DWARF 4 line program header naming one file, "a.c", and no rows."""
    header = bytes([1, 1, 1, 0xfb, 14, 13]) + bytes([0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1]) + b"\0" + b"a.c\0\0\0\0" + b"\0"
    body = struct.pack("<H", 4) + struct.pack("<I", len(header)) + header
    return struct.pack("<I", len(body)) + body


def dwarf_cases():
    cu_attrs = [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data4)]
    fn_attrs = [(DW_AT_name, DW_FORM_string), (DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data4)]
    cu = uleb(1) + struct.pack("<QI", 0x1000, 0x100)
    # A .debug_info without a unit libdw accepts: DWARFSource's init fails
    # after every stored property is set (the double free the fuzzer found).
    write("dwarf", "no-units", elf([TEXT, Section(".debug_info", SHT_PROGBITS, b"\0\0\0\0"),
                                    Section(".debug_abbrev", SHT_PROGBITS, b"\0")]))
    write("dwarf", "no-units-garbage", elf([TEXT, Section(".debug_info", SHT_PROGBITS, b"\xff\xff\xff\xff\x01\x02"),
                                            Section(".debug_abbrev", SHT_PROGBITS, b"\0")]))
    # Namespaces nested 3000 deep, a function at the bottom.
    depth = 3000
    abbrevs = abbrev(1, DW_TAG_compile_unit, True, cu_attrs) + abbrev(2, DW_TAG_namespace, True, []) \
        + abbrev(3, DW_TAG_subprogram, False, fn_attrs)
    dies = cu + uleb(2) * depth + uleb(3) + b"f\0" + struct.pack("<QI", 0x1000, 0x10) + b"\0" * (depth + 1)
    write("dwarf", "nesting-3000", dwarf_elf(abbrevs, dies))
    # Inlined subroutines nested 1500 deep, all holding the address.
    abbrevs = abbrev(1, DW_TAG_compile_unit, True, cu_attrs) + abbrev(2, DW_TAG_subprogram, True, fn_attrs) \
        + abbrev(3, DW_TAG_inlined_subroutine, True, [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data4)])
    inl = uleb(3) + struct.pack("<QI", 0x1000, 0x10)
    write("dwarf", "inline-nesting-500", dwarf_elf(abbrevs, cu + uleb(2) + b"f\0" + struct.pack("<QI", 0x1000, 0x10)
                                                   + inl * 500 + b"\0" * 502))
    # DW_AT_call_line and DW_AT_call_file past Int.max (data8).
    abbrevs = abbrev(1, DW_TAG_compile_unit, True, cu_attrs + [(DW_AT_stmt_list, DW_FORM_sec_offset)]) \
        + abbrev(2, DW_TAG_subprogram, True, fn_attrs) \
        + abbrev(3, DW_TAG_inlined_subroutine, False, [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data4),
                                                       (DW_AT_call_file, DW_FORM_data8), (DW_AT_call_line, DW_FORM_data8)])
    dies = uleb(1) + struct.pack("<QII", 0x1000, 0x100, 0) + uleb(2) + b"f\0" + struct.pack("<QI", 0x1000, 0x10) \
        + uleb(3) + struct.pack("<QIQQ", 0x1000, 0x8, 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff) + b"\0\0"
    write("dwarf", "call-file-line-huge", dwarf_elf(abbrevs, dies, line_table()))
    # A subprogram that is its own abstract origin, and two that specify each other.
    abbrevs = abbrev(1, DW_TAG_compile_unit, True, cu_attrs) \
        + abbrev(2, DW_TAG_subprogram, False, [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data4),
                                               (DW_AT_abstract_origin, DW_FORM_ref4)]) \
        + abbrev(3, DW_TAG_subprogram, False, [(DW_AT_specification, DW_FORM_ref4)])
    first = 11 + len(cu)  # unit-relative offset of the first child DIE (header 11 bytes)
    dies = cu + uleb(2) + struct.pack("<QII", 0x1000, 0x10, first) \
        + uleb(2) + struct.pack("<QII", 0x1010, 0x10, first + 17 + 17) + uleb(3) + struct.pack("<I", first + 17) + b"\0"
    write("dwarf", "origin-cycles", dwarf_elf(abbrevs, dies))
    # Ranges that wrap or run backwards.
    abbrevs = abbrev(1, DW_TAG_compile_unit, True, [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_data8)]) \
        + abbrev(2, DW_TAG_subprogram, False, [(DW_AT_low_pc, DW_FORM_addr), (DW_AT_high_pc, DW_FORM_addr)])
    dies = uleb(1) + struct.pack("<QQ", 0x1000, 0xffff_ffff_ffff_ffff) + uleb(2) + struct.pack("<QQ", 0x1080, 0x1000) \
        + uleb(2) + struct.pack("<QQ", 0xffff_ffff_ffff_fff0, 0x10) + b"\0"
    write("dwarf", "ranges-wrap", dwarf_elf(abbrevs, dies))


def text_cases():
    maps = [
        ("overlong-hex", "00000000000000000-1 r-xp 00000000 08:02 1 /a\n"),
        ("start-above-end", "2000-1000 r-xp 00000000 08:02 1 /a\n"),
        ("inode-overflow", "1000-2000 r-xp 00000000 08:02 18446744073709551616 /a\n"),
        ("device-overlong", "1000-2000 r-xp 00000000 123456789:0 1 /a\n"),
        ("fields-missing", "1000-2000\n1000-2000 r-xp\n1000-2000 r-xp 0 08:02\n-\n \n"),
        ("bad-perms", "1000-2000 rwxq 00000000 08:02 1 /a\n"),
        ("odd-paths", "1000-2000 r-xp 00000000 08:02 1          /a b/c (deleted)\n"
                      "2000-3000 rw-p 00000000 00:00 0    [anon:x y]\n3000-4000 r--s 0 0:0 0 \0\xff\r\n"
                      "ffffffffffff0000-ffffffffffffffff r-xp ffffffffffffffff ffffffff:ffffffff 1 /max"),
        ("only-newlines", "\n" * 300),
    ]
    for name, text in maps:
        write("procmaps", name, text.encode("latin-1"))
    perf = [
        ("overlapping", "1000 100 old\n1080 10 newer\n1000 100 newest same range\n1040 0 empty\n"
                        "0 ffffffffffffffff everything\n"),
        ("wraps", "ffffffffffffff00 100 wraps to zero\nffffffffffffff00 ff fits\n"),
        ("bad-fields", "0x 10 no digits\n10000000000000000 1 seventeen\nzz 1 x\n1000 10\n1000\n\t\n 1000 10 lead\n"
                       "1000\t10\tx\r\n"),
        ("many-same", "4000 10 same\n" * 400),
        ("staircase", "".join("%x %x s%d\n" % (0x1000 + i, 0x1000 - i, i) for i in range(300))),
    ]
    for name, text in perf:
        write("perfmap", name, text.encode())


if __name__ == "__main__":
    elf_cases()
    symtab_cases()
    dwarf_cases()
    text_cases()
