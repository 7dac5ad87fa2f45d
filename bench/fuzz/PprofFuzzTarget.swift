// libFuzzer entry point for reading pprof files: compiled as module
// FuzzPprof against the SprofProfile library (Sources/Profile, with
// SwiftProtobuf and zlib) by bench/fuzz.sh (target `pprof`).
//
// Input: a pprof file's bytes, gzip-compressed or not (both are valid pprof,
// and `Pprof.decode` tells them apart by the gzip magic). What `sprof report`
// does with a decoded profile is done with every one: folded stacks and the
// top table for each value, the speedscope export, `--value both`'s sum, the
// agent's merge, and a re-export (`--pprof`). Everything must end in a value
// or a ProfileError — never a trap, a hang, or memory beyond the inflate cap.
//
// One property is checked, not only survived: a re-exported profile reads
// back as itself after one round (the first round may normalise: a label
// whose string is "" is written as index 0, which reads back as the number 0).
@testable import SprofProfile

/// Inflated bytes allowed per input: 4 MiB, well below libFuzzer's default
/// 2 GiB RSS limit even after protobuf decoding multiplies them, so a gzip
/// bomb is found as the ProfileError it must be, not as an out-of-memory
/// report. `sprof report` reads with ``Gzip/maxInflatedSize`` (1 GiB): the
/// same code. DataFuzzCorpusTests uses the same 4 MiB.
private let fuzzInflateLimit = 4 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func pprofFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let p = try? Pprof.decode(bytes, path: "fuzz", inflateLimit: fuzzInflateLimit) else { return 0 }
    for i in 0..<max(p.sampleTypes.count, 1) {
        let folded = p.foldedStacks(valueIndex: i)
        _ = Profile.renderFolded(folded.filter { $0.value != 0 })
        let (rows, total) = p.top(valueIndex: i)
        _ = Profile.renderTop(rows, total: total, limit: 30, unit: "count")
    }
    _ = try? p.speedscope(name: "fuzz")
    _ = p.addingSum(of: [0, 1], as: .init("wall", "nanoseconds")).foldedStacks(valueIndex: p.sampleTypes.count)
    _ = try? Profile.merging([p, p])
    guard let once = try? Pprof.encodeUncompressed(p) else { return 0 }
    let q: Profile, r: Profile
    do { q = try Pprof.decode(once, path: "round 1") } catch { fatalError("a re-exported profile does not read back: \(error)") }
    do { r = try Pprof.decode(try Pprof.encodeUncompressed(q), path: "round 2") } catch { fatalError("round 2: \(error)") }
    precondition(q == r, "a re-exported profile reads back differently")
    return 0
}
