import SprofBase
import SprofELF

/// Names for the procedure linkage table's stubs, which no symbol table
/// covers: `qsort@plt`, as objdump and perf print them.
///
/// An x86-64 PLT stub jumps through a GOT slot: `jmp *disp32(%rip)`
/// (`ff 25 disp32`), alone in a lazy `.plt` entry (after `endbr64`/`bnd`
/// in `.plt.sec` with IBT, System V x86-64 psABI §"Procedure Linkage Table",
/// and in `.plt.got`'s 8- or 16-byte entries). The slot's address is
/// `next instruction + disp32`, and the relocation the dynamic linker
/// applies to that slot (`R_X86_64_JUMP_SLOT` in `.rela.plt`,
/// `R_X86_64_GLOB_DAT` in `.rela.dyn`) names the symbol. Decoding the jump
/// rather than counting entries works for every layout the linkers emit
/// (BFD's lazy `.plt`, `-z now` `.plt.got`, IBT `.plt.sec`, lld's), and a
/// stub whose jump cannot be decoded or whose slot has no named relocation
/// (the lazy-binding `PLT0`) is left unnamed. `R_X86_64_IRELATIVE` slots
/// (an IFUNC resolved at load) name no symbol: such stubs are named by the
/// resolver's symbol when one has that address.
public struct PLTStubs: Sendable {
    public struct Stub: Hashable, Sendable {
        public var start: StatedAddress
        public var end: StatedAddress
        /// The called function's name, as the dynamic symbol table has it.
        public var target: String
    }

    /// Sorted by start; stubs do not overlap.
    public let stubs: [Stub]

    /// `R_X86_64_GLOB_DAT`, `R_X86_64_JUMP_SLOT`, `R_X86_64_IRELATIVE` (psABI table "Relocation Types").
    static let globDat: UInt32 = 6, jumpSlot: UInt32 = 7, irelative: UInt32 = 37

    /// Reads the stubs of `file`; none for a file that is not x86-64, has no
    /// PLT or whose relocations cannot be read (the names are a convenience:
    /// a corrupt table costs them, never a wrong name).
    ///
    /// Sections do not overlap in a well-formed file (gABI "Sections"), so
    /// the relocation sections together, and the PLT sections together, hold
    /// at most the file's bytes; once either passes that, the rest of its
    /// kind is not read. Without that bound, headers pointing at the same
    /// bytes over and over (64 bytes each) cost O(headers × file size) time,
    /// and as many stubs in memory.
    public init(_ file: ELFFile) {
        var budget = file.bytes.count
        guard file.header.machine == .x86_64 else { stubs = []; return }
        // GOT slot address -> symbol name, from every SHT_RELA section that
        // applies to dynamic symbols (sh_link names .dynsym).
        var slotNames: [UInt64: String] = [:]
        var irelativeTargets: [UInt64: UInt64] = [:]
        for (i, h) in file.sectionHeaders.enumerated() where h.type == .rela && h.entrySize == 24 {
            guard let rela = try? file.section(at: i) else { continue }
            budget -= rela.bytes.count
            guard budget >= 0 else { break }
            let link = Int(h.link)
            guard link > 0, link < file.sectionHeaders.count, file.sectionHeaders[link].type == .dynamicSymbols,
                  let dynsym = try? file.section(at: link) else { continue }
            let strLink = Int(file.sectionHeaders[link].link)
            guard strLink > 0, strLink < file.sectionHeaders.count, let strtab = try? file.section(at: strLink) else { continue }
            let b = rela.bytes
            // Elf64_Rela: r_offset@0 u64, r_info@8 u64 (sym << 32 | type), r_addend@16 i64.
            for o in stride(from: 0, to: b.count - 23, by: 24) {
                let offset = b.le64(o), info = b.le64(o + 8)
                let type = UInt32(truncatingIfNeeded: info), sym = Int(info >> 32)
                if type == Self.irelative { irelativeTargets[offset] = b.le64(o + 16); continue }
                guard type == Self.jumpSlot || type == Self.globDat, sym > 0 else { continue }
                let so = sym * 24
                guard so + 24 <= dynsym.bytes.count else { continue }
                let nameOffset = Int(dynsym.bytes.le32(so))
                guard nameOffset < strtab.bytes.count else { continue }
                // At most ELFSymbols.maximumNameLength bytes: every relocation
                // may point into one long NUL-less name.
                let tail = UnsafeRawBufferPointer(rebasing: strtab.bytes[nameOffset..<min(strtab.bytes.count,
                                                                                             nameOffset + ELFSymbols.maximumNameLength)])
                let end = tail.firstIndex(of: 0) ?? tail.count
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: tail[..<end]), as: UTF8.self)
                if !name.isEmpty { slotNames[offset] = name }
            }
        }
        var out: [Stub] = []
        budget = file.bytes.count
        for (i, h) in file.sectionHeaders.enumerated() where h.flags.contains(.executable) && h.type == .progbits {
            guard let name = file.name(of: h), name == ".plt" || name == ".plt.sec" || name == ".plt.got" || name == ".iplt",
                  let section = try? file.section(at: i) else { continue }
            budget -= section.bytes.count
            guard budget >= 0 else { break }
            let entry = name == ".plt.got" && h.entrySize == 8 ? 8 : 16
            let b = section.bytes
            for o in stride(from: 0, to: b.count - entry + 1, by: entry) {
                guard let slot = Self.jumpSlot(in: b, at: o, length: entry, address: h.address.rawValue &+ UInt64(o)) else { continue }
                let target = slotNames[slot] ?? irelativeTargets[slot].map { "*ABS*+0x" + String($0, radix: 16) }
                guard let target else { continue }
                let start = h.address.rawValue &+ UInt64(o)
                out.append(Stub(start: StatedAddress(start), end: StatedAddress(start &+ UInt64(entry)), target: target))
            }
        }
        out.sort { $0.start < $1.start }
        stubs = out
    }

    /// The GOT slot the stub at `b[o..<o+length]` (stated address `address`)
    /// jumps through: the first `ff 25 disp32` (`jmp *disp32(%rip)`, with an
    /// optional `f2` BND prefix before it) in the entry.
    static func jumpSlot(in b: UnsafeRawBufferPointer, at o: Int, length: Int, address: UInt64) -> UInt64? {
        var k = 0
        while k + 6 <= length {
            if b[o + k] == 0xff && b[o + k + 1] == 0x25 {
                let disp = Int64(Int32(bitPattern: b.le32(o + k + 2)))
                return (address &+ UInt64(k + 6)) &+ UInt64(bitPattern: disp)
            }
            k += 1
        }
        return nil
    }

    /// The stub containing `address`, if any. Binary search.
    public func lookup(_ address: StatedAddress) -> Stub? {
        var lo = 0, hi = stubs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if stubs[mid].start <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, stubs[lo - 1].end > address else { return nil }
        return stubs[lo - 1]
    }
}
