// libFuzzer entry point for the /proc/PID/maps parser
// (Sources/Capture/ProcMaps.swift): built by bench/fuzz.sh (target
// "procmaps") from ProcMaps.swift and the few capture files it needs.
//
// Input: the text of a maps file (any bytes: a process names its own files,
// and a file name is printed as it is, bar newlines). parse(bytes:) must
// return mappings or throw a CaptureError; each mapping's derived values are
// read. Tests/SprofTests/FuzzCorpusTests.swift replays the committed corpus.
import SprofBase
@testable import SprofCapture

@_cdecl("LLVMFuzzerTestOneInput")
public func procMapsFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    do {
        let mappings = try ProcMaps.parse(bytes: UnsafeRawBufferPointer(start: data, count: size), pid: 1)
        for m in mappings {
            _ = m.isDeletedFile
            _ = m.isFile
            _ = m.size
            _ = m.contains(m.start)
        }
    } catch {
        _ = error.description
    }
    return 0
}
