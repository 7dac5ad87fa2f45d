// libFuzzer entry point for the perf map parser (PerfMap(utf8:) in
// symbols/PerfMap.swift): built by bench/fuzz.sh (target "perfmap") against
// SprofSymbols (-enable-testing: the initialiser is internal).
//
// Input: the text of a /tmp/perf-PID.map (any bytes: the JIT in the
// profiled process writes it). The parse must end in a map; every symbol's
// start, middle and last byte is looked up, and must be owned by some line.
// Tests/SprofTests/FuzzCorpusTests.swift replays the committed corpus.
import SprofBase
@testable import SprofSymbols

@_cdecl("LLVMFuzzerTestOneInput")
public func perfMapFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let map = PerfMap(utf8: UnsafeBufferPointer(start: data, count: size))
    _ = map.skippedLines
    for s in map.symbols.prefix(4096) {
        for a in [s.start.rawValue, s.start.rawValue &+ s.size / 2, s.end.rawValue &- 1] {
            // Every byte of a surviving symbol's range is owned by some line
            // (a newer one may have taken it), so each lookup must hit.
            guard let hit = map.lookup(ProcessAddress(a)) else { fatalError("perf map: no owner for 0x\(String(a, radix: 16))") }
            _ = hit.name.utf8.count
        }
    }
    return 0
}
