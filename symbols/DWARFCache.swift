import CLibDW
import CLibElf
import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Decompressed DWARF kept on disk by build-id, so that a compressed debug
/// file is inflated once, not on every run.
///
/// Distributions ship separate debug files with `SHF_COMPRESSED` sections
/// (gABI "Compressed sections"; Debian's libc6-dbg: 3 MiB of zlib for
/// 14 MiB of DWARF). libdw inflates every `.debug_*` section when the file is
/// opened (`dwarf_begin_elf` → `elf_compress`), which costs ~0.09 s for
/// libc on this project's 2-CPU VM: the largest part of a short
/// `sprof record`'s own CPU time, to name two or three libc frames. The
/// first time, the sections libdw inflated are written out as a small ELF
/// file holding only those `.debug_*` sections, uncompressed; later opens of
/// the same build-id read that file, which libdw maps without copying.
///
/// The file is `<directory>/<build-id>.debug`: written to a temporary name
/// and renamed, so a reader sees a whole file or none; one that libdw refuses
/// is removed and rebuilt. Files are touched when used; when the directory
/// holds more than ``byteLimit``, the least recently used go first. The
/// cache is only a copy: deleting the directory at any time loses nothing.
public struct DWARFCache: Sendable {
    /// Where the files go.
    public var directory: String
    /// The most the directory may hold before old files are removed.
    public var byteLimit: Int = 2 << 30

    public init(directory: String, byteLimit: Int = 2 << 30) {
        self.directory = directory
        self.byteLimit = byteLimit
    }

    /// `SPROF_CACHE_DIR/dwarf` if set (`off` or empty: no cache); else
    /// `/var/cache/sprof/dwarf` for root (a system tool's cache, not root's
    /// home: `sudo` may keep a user's `HOME`); else
    /// `$XDG_CACHE_HOME/sprof/dwarf`, else `~/.cache/sprof/dwarf`.
    public static var standard: DWARFCache? {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        if let dir = env("SPROF_CACHE_DIR") {
            return dir.isEmpty || dir == "off" ? nil : DWARFCache(directory: dir + "/dwarf")
        }
        if geteuid() == 0 { return DWARFCache(directory: "/var/cache/sprof/dwarf") }
        if let xdg = env("XDG_CACHE_HOME"), xdg.hasPrefix("/") { return DWARFCache(directory: xdg + "/sprof/dwarf") }
        if let home = env("HOME"), home.hasPrefix("/") { return DWARFCache(directory: home + "/.cache/sprof/dwarf") }
        return nil
    }

    static let unused: Set<String> = [".debug_loclists", ".debug_loc", ".debug_macro", ".debug_macinfo", ".debug_frame"]

    func path(for id: BuildID) -> String { "\(directory)/\(id.description).debug" }

    /// The cached file for `id`, touched as used; nil if there is none.
    func lookup(_ id: BuildID) -> String? {
        let p = path(for: id)
        // Only a regular file this user wrote: not a symlink or a file
        // someone else planted in the directory (libdw would parse it).
        guard let st = try? SafeFile.lstat(p), st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else { return nil }
        _ = utimensat(AT_FDCWD, p, nil, 0)
        return p
    }

    /// Forgets a cached file libdw refused.
    func remove(_ id: BuildID) { _ = unlink(path(for: id)) }

    /// Writes the `.debug_*` sections of `dwarf`'s ELF that are no longer
    /// compressed (libdw inflated them) as `<build-id>.debug`. Best effort:
    /// any failure (read-only or full disk, no permission) leaves no file
    /// and is not an error, since the answers do not depend on it.
    func store(_ dwarf: OpaquePointer, buildID id: BuildID) {
        guard let elf = dwarf_getelf(dwarf) else { return }
        var ehdr = GElf_Ehdr()
        guard gelf_getehdr(elf, &ehdr) != nil, ehdr.e_ident.4 == UInt8(ELFCLASS64),
              // ET_REL debug sections (kernel modules, objects) need relocations
              // applied, which libdw's dwarf_begin does not do; not cached.
              ehdr.e_type == UInt16(ET_EXEC) || ehdr.e_type == UInt16(ET_DYN) else { return }
        var shstrndx = 0
        guard elf_getshdrstrndx(elf, &shstrndx) == 0 else { return }

        struct Section { var name: String; var header: GElf_Shdr; var bytes: UnsafeRawBufferPointer }
        var sections: [Section] = []
        var scn = elf_nextscn(elf, nil)
        while let s = scn {
            defer { scn = elf_nextscn(elf, s) }
            var sh = GElf_Shdr()
            guard gelf_getshdr(s, &sh) != nil, sh.sh_type == UInt32(SHT_PROGBITS),
                  sh.sh_flags & UInt64(SHF_COMPRESSED) == 0,
                  let cname = elf_strptr(elf, shstrndx, Int(sh.sh_name)) else { continue }
            let name = String(cString: cname)
            // Location lists and macros are never read to name an address.
            guard name.hasPrefix(".debug_"), !Self.unused.contains(name), let data = elf_getdata(s, nil), let buf = data.pointee.d_buf,
                  data.pointee.d_size > 0 else { continue }
            sections.append(Section(name: name, header: sh, bytes: UnsafeRawBufferPointer(start: buf, count: data.pointee.d_size)))
        }
        guard sections.contains(where: { $0.name == ".debug_info" }) else { return }

        // Layout (gABI "ELF Header", "Sections"): header, section bytes,
        // .shstrtab, then the section header table: null, the sections, .shstrtab.
        var names: [UInt8] = [0]
        var nameOffsets: [Int] = []
        for s in sections { nameOffsets.append(names.count); names += Array(s.name.utf8) + [0] }
        let shstrtabName = names.count
        names += Array(".shstrtab".utf8) + [0]
        var offset = 64
        var dataOffsets: [Int] = []
        for s in sections { dataOffsets.append(offset); offset += s.bytes.count }
        let namesOffset = offset
        offset += names.count
        let headersOffset = (offset + 7) & ~7
        let count = sections.count + 2

        // SprofBase's SafeFile (Sources/Base/SafeWrite.swift), as for every
        // file sprof writes: the directory 0700 and refused if it is a
        // symlink or another user's; the file 0600 (it holds the names of a
        // binary's functions and sources), created O_EXCL|O_NOFOLLOW under an
        // unpredictable name and renamed over `<build-id>.debug`.
        guard (try? SafeFile.makePrivateDirectory(directory)) != nil else { return }
        let final = path(for: id)
        guard let target = try? SafeFile.Destination(final) else { return }
        defer { target.close() }
        guard let (fd, temporary) = try? target.createTemporary() else { return }
        var ok = true
        func put(_ p: UnsafeRawBufferPointer) {
            var done = 0
            while ok && done < p.count {
                let n = write(fd, p.baseAddress! + done, p.count - done)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; ok = false } else { done += n }
            }
        }
        var out = Elf64_Ehdr()
        out.e_ident = ehdr.e_ident
        out.e_type = ehdr.e_type
        out.e_machine = ehdr.e_machine
        out.e_version = UInt32(EV_CURRENT)
        out.e_flags = ehdr.e_flags
        out.e_ehsize = 64
        out.e_shoff = UInt64(headersOffset)
        out.e_shentsize = UInt16(MemoryLayout<Elf64_Shdr>.size)
        out.e_shnum = UInt16(count)
        out.e_shstrndx = UInt16(count - 1)
        withUnsafeBytes(of: &out) { put($0) }
        for s in sections { put(s.bytes) }
        names.withUnsafeBytes { put($0) }
        let pad = [UInt8](repeating: 0, count: headersOffset - offset)
        pad.withUnsafeBytes { put($0) }
        var headers = [Elf64_Shdr](repeating: Elf64_Shdr(), count: count)
        for (i, s) in sections.enumerated() {
            var h = Elf64_Shdr()
            h.sh_name = UInt32(nameOffsets[i])
            h.sh_type = UInt32(SHT_PROGBITS)
            h.sh_flags = s.header.sh_flags & UInt64(SHF_MERGE | SHF_STRINGS)
            h.sh_offset = UInt64(dataOffsets[i])
            h.sh_size = UInt64(s.bytes.count)
            h.sh_addralign = 1
            h.sh_entsize = s.header.sh_entsize
            headers[i + 1] = h
        }
        var st = Elf64_Shdr()
        st.sh_name = UInt32(shstrtabName)
        st.sh_type = UInt32(SHT_STRTAB)
        st.sh_offset = UInt64(namesOffset)
        st.sh_size = UInt64(names.count)
        st.sh_addralign = 1
        headers[count - 1] = st
        headers.withUnsafeBytes { put($0) }
        if ok && fsync(fd) != 0 { ok = false }
        if close(fd) != 0 { ok = false }
        guard ok, (try? target.install(temporary)) != nil else { target.remove(temporary); return }
        evict(keeping: final)
    }

    /// Removes the least recently used files until the directory holds at
    /// most ``byteLimit`` (the file just written is kept).
    private func evict(keeping kept: String) {
        guard let dir = opendir(directory) else { return }
        var files: [(path: String, bytes: Int, used: Int)] = []
        var total = 0
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard name.hasSuffix(".debug") else { continue }
            var st = stat()
            let p = directory + "/" + name
            guard stat(p, &st) == 0 else { continue }
            files.append((p, Int(st.st_size), st.st_mtim.tv_sec))
            total += Int(st.st_size)
        }
        closedir(dir)
        guard total > byteLimit else { return }
        for f in files.sorted(by: { $0.used < $1.used }) where f.path != kept {
            if total <= byteLimit { break }
            if unlink(f.path) == 0 { total -= f.bytes }
        }
    }
}
