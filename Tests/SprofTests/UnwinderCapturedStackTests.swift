import Foundation
import SprofBase
import XCTest
@testable import SprofCapture
@testable import SprofUnwind

/// sprof's unwinder on a stack a real program captured of itself (the
/// OracleFixture of LibunwindOracleTests: main -> a -> b -> c built with
/// -O2 -fomit-frame-pointer, c copies its registers, stack and maps). No BPF.
final class UnwinderCapturedStackTests: XCTestCase {
    /// One unwinder (and so one module cache) for all cases of a test.
    let shared = SampleUnwinder(source: .recordedPaths)

    func unwind(_ sample: RawSample, _ mappings: [Mapping]) -> ([UInt64], UnwindStop) {
        shared.unwind(sample, pid: 1, generation: 1, mappings: mappings) { f, o in (Array(f), o.stop) }
    }

    func testSameFramesAsLibunwindToTheEndOfTheStack() throws {
        let f = try OracleFixture.standard()
        let (frames, stop) = unwind(f.sample(), f.mappings)
        XCTAssertEqual(stop, .complete)
        let names = frames.enumerated().map { i, a in f.function(at: ProcessAddress(a), isReturnAddress: i > 0) }
        XCTAssertEqual(Array(names.prefix(4)), ["c", "b", "a", "main"])
        XCTAssertEqual(names.last, "_start")
        let oracle = LibunwindUnwinder().unwind(sample: f.sample(), mappings: f.mappings)
        XCTAssertEqual(frames, oracle.frames.map(\.rawValue))
    }

    /// CFI only in a separate debug file found through `.gnu_debuglink`:
    /// built with `.debug_frame` only (`-fno-asynchronous-unwind-tables`),
    /// then split as distributions do (`objcopy --only-keep-debug`,
    /// `strip --strip-debug`, `objcopy --add-gnu-debuglink`).
    func testDebugFrameInSeparateDebugFile() throws {
        let f = try OracleFixture.make(flags: ["-fno-asynchronous-unwind-tables"])
        try OracleFixture.run("/usr/bin/objcopy", ["--only-keep-debug", f.exe, f.exe + ".debug"])
        try OracleFixture.run("/usr/bin/strip", ["--strip-debug", f.exe])
        try OracleFixture.run("/usr/bin/objcopy", ["--add-gnu-debuglink=\(f.exe).debug", f.exe])
        XCTAssertFalse(try OracleFixture.run("/usr/bin/readelf", ["-S", f.exe]).contains(".debug_frame"))
        let (frames, stop) = SampleUnwinder(source: .recordedPaths).unwind(f.sample(), pid: 1, generation: 1, mappings: f.mappings) {
            fr, o in (Array(fr), o.stop)
        }
        XCTAssertEqual(stop, .complete)
        let names = frames.enumerated().map { i, a in f.function(at: ProcessAddress(a), isReturnAddress: i > 0) }
        XCTAssertEqual(Array(names.prefix(4)), ["c", "b", "a", "main"])
    }

    /// Every cut of the stack copy: the frames found are the true ones (a
    /// prefix of the full unwind) and the stack is marked truncated.
    func testEveryShortCopyIsTruncatedNeverWrong() throws {
        let f = try OracleFixture.standard()
        let (full, _) = unwind(f.sample(), f.mappings)
        let bytes = Array(f.sample().userStack)
        for cut in stride(from: 0, to: bytes.count, by: 8) {
            let (frames, stop) = unwind(f.sample(stack: Array(bytes.prefix(cut))), f.mappings)
            XCTAssertEqual(Array(full.prefix(frames.count)), frames, "cut at \(cut)")
            if frames.count < full.count { XCTAssertTrue(stop.isTruncated, "cut at \(cut): \(stop)") }
        }
    }

    /// Arbitrary stack bytes and registers through real binaries' CFI (the
    /// fixture and libc): never a crash or a hang, and never more than 512
    /// frames. A seeded generator, so a failure reproduces.
    func testRandomStacksNeverCrashOrHang() throws {
        let f = try OracleFixture.standard()
        var rng = SplitMix64(seed: 0x5350524f46)
        let text = f.mappings.filter(\.isExecutable)
        let u = SampleUnwinder(source: .recordedPaths)
        let base = f.sample()
        for i in 0..<4_000 {
            let m = text[Int(rng.next() % UInt64(text.count))]
            let ip = m.start.rawValue + rng.next() % m.size
            var stack = [UInt8](repeating: 0, count: Int(rng.next() % 4096) & ~7)
            for j in stride(from: 0, to: stack.count, by: 8) {
                // Mix plausible values (code and stack addresses) with noise.
                let v: UInt64
                switch rng.next() % 4 {
                case 0: v = text[Int(rng.next() % UInt64(text.count))].start.rawValue + rng.next() % 4096
                case 1: v = base.sp.rawValue + rng.next() % 8192
                default: v = rng.next()
                }
                withUnsafeBytes(of: v.littleEndian) { for k in 0..<8 { stack[j + k] = $0[k] } }
            }
            let s = OracleFixture.sample(ip: ProcessAddress(ip), sp: base.sp, bp: ProcessAddress(rng.next()), stack: stack)
            u.unwind(s, pid: 1, generation: 1, mappings: f.mappings) { frames, outcome in
                XCTAssertLessThanOrEqual(frames.count, UnwinderX86_64.maxFrames, "case \(i)")
                if frames.count > 0 { XCTAssertEqual(frames[0], ip) }
            }
        }
    }
}

