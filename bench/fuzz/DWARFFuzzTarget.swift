// libFuzzer entry point for source lines and inline frames
// (symbols/DWARFSource.swift, through elfutils' libdw): built by
// bench/fuzz.sh (target "dwarf") against SprofBase, SprofELF and
// SprofSymbols (-enable-testing: DWARFSource is internal), linked with
// -ldw -lelf. libdw is not instrumented: coverage counts only our side,
// and a crash inside libdw shows as a crash all the same.
//
// Input: a whole ELF file with DWARF sections. As SymbolizedModule does,
// the DWARF is opened only when the file reads as ELF and has a
// .debug_info section; libdw reads it from a path, so the input is written
// to a file in /dev/shm (tmpfs), rewritten for each input. Frames are
// then asked for at the function symbols' addresses and through the
// executable sections. Tests/SprofTests/FuzzCorpusTests.swift replays the
// committed corpus through the same steps.
#if canImport(Glibc)
import Glibc
#endif
import SprofBase
import SprofELF
@testable import SprofSymbols

nonisolated(unsafe) private var fuzzFile: Int32 = -1
private let fuzzPath = "/dev/shm/sprof-fuzz-dwarf-\(getpid()).elf"

@_cdecl("LLVMFuzzerTestOneInput")
public func dwarfFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let elf = try? ELFFile(copying: bytes), let info = elf.sectionIndex(named: ".debug_info") else { return 0 }
    if fuzzFile < 0 {
        fuzzFile = open(fuzzPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fuzzFile >= 0, "cannot create \(fuzzPath)")
    }
    precondition(ftruncate(fuzzFile, 0) == 0 && pwrite(fuzzFile, data, size, 0) == size, "cannot write \(fuzzPath)")
    let compressed = elf.sectionHeaders[info].flags.contains(.compressed)
    guard let dwarf = DWARFSource(path: fuzzPath, compressed: compressed) else { return 0 }
    var addresses: [UInt64] = []
    if let symbols = try? ELFSymbols(elf) {
        for s in symbols.prefix(64) { addresses += [s.address.rawValue, s.address.rawValue &+ s.size / 2] }
    }
    for h in elf.sectionHeaders.prefix(64) where h.flags.contains(.executable) {
        for k: UInt64 in 0..<4 { addresses.append(h.address.rawValue &+ h.size / 4 &* k) }
    }
    for a in addresses.prefix(256) {
        for f in dwarf.frames(at: StatedAddress(a)) {
            _ = f.name?.utf8.count
            _ = f.file?.utf8.count
        }
    }
    return 0
}
