// libFuzzer entry point for the ELF symbol readers (symbols/ELFSymbols.swift,
// symbols/PLT.swift, symbols/AddressTranslation.swift): built by
// bench/fuzz.sh (target "symtab") against SprofBase, SprofELF and
// SprofSymbols (compiled with -enable-testing: the harness reads internals).
//
// Input: a whole ELF file. The symbol table is read (.symtab, else .dynsym),
// the first symbols' names decoded, and every lookup a module makes is made:
// by stated address (at, just before, inside and at the end of symbols), by
// process address through a mapping of each PT_LOAD segment, and the PLT
// stubs. Each must return or throw a SymbolError.
// Tests/SprofTests/FuzzCorpusTests.swift replays the committed corpus
// through the same steps.
import SprofBase
import SprofELF
@testable import SprofSymbols

@_cdecl("LLVMFuzzerTestOneInput")
public func symtabFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let elf = try? ELFFile(copying: UnsafeBufferPointer(start: data, count: size)) else { return 0 }
    do {
        let symbols = try ELFSymbols(elf)
        for i in symbols.indices.prefix(512) {
            let s = symbols[i]
            for a in [s.address.rawValue, s.address.rawValue &- 1, s.address.rawValue &+ s.size / 2,
                      s.end.rawValue, s.end.rawValue &- 1] {
                if let hit = symbols.lookup(StatedAddress(a)) { _ = hit.symbol.name.utf8.count &+ Int(truncatingIfNeeded: hit.offset) }
            }
        }
        for segment in elf.loadSegments.prefix(64) {
            let start = 0x5555_0000_0000 &+ (segment.offset.rawValue & ~0xfff)
            let mapping = Mapping(start: ProcessAddress(start), end: ProcessAddress(start &+ max(segment.fileSize, 1)),
                                  fileOffset: FileOffset(segment.offset.rawValue & ~0xfff),
                                  permissions: segment.flags.contains(.execute) ? [.read, .execute] : [.read],
                                  inode: 1, path: "/fuzz")
            for k: UInt64 in [0, 1, 0x40, 0xfff, segment.fileSize / 2, segment.fileSize &- 1] {
                _ = symbols.lookup(ProcessAddress(start &+ k), in: mapping)
            }
        }
    } catch {
        _ = error.description
    }
    let plt = PLTStubs(elf)
    for stub in plt.stubs.prefix(512) {
        _ = plt.lookup(stub.start)
        _ = plt.lookup(StatedAddress(stub.end.rawValue &- 1))
    }
    return 0
}
