// Unwinder, frames/s on recorded raw samples: SampleUnwinder (DWARF CFI,
// x86_64) over every raw sample of a `sprof record --raw` file, the way
// `sprof report FILE --stats` times "unwind only": samples decoded into
// memory and every binary's table built in setup (one untimed pass), so the
// measured loop is the unwinder alone with warm tables.
//
// Input: SPROF_BENCH_RAW=FILE[:FILE...], one benchmark per file, named after
// it. bench/micro/run records two (the c_chain_g and c_recursion fixtures of
// Tests/Fixtures/unwind); without the variable the benchmark fails and says so.
// The binaries must still be at their recorded paths (the unwinder reads
// their CFI, checked against the recorded build-ids).
import Benchmark
import MicroSupport
import SprofBase
import SprofCapture
import SprofUnwind

/// The decoded samples of one recording and an unwinder whose tables are built.
final class Recording: @unchecked Sendable {
    let samples: [(sample: RawSample, mappings: RawMappingSnapshot?)]
    let unwinder: SampleUnwinder
    /// Frames of one pass over `samples` (the same on every pass: the
    /// unwinder is deterministic).
    let framesPerPass: Int
    /// Passes per iteration, so that an iteration is ~250,000 frames (several
    /// ms): the per-iteration bookkeeping of the runner stays negligible, as in
    /// `sprof report --stats`, which times ~200,000 samples.
    let passes: Int

    init(path: String) throws {
        let reader: RawFileReader
        do { reader = try RawFileReader(path: path) } catch {
            throw SetupError("SPROF_BENCH_RAW: \(path): \(error)")
        }
        var samples: [(sample: RawSample, mappings: RawMappingSnapshot?)] = []
        reader.forEachSample { sample, snapshot in
            // Samples unwound while recording carry frames, not stack bytes: not the unwinder's work.
            if sample.userFrameCount == nil { samples.append((sample, snapshot)) }
        }
        guard !samples.isEmpty else {
            throw SetupError("SPROF_BENCH_RAW: \(path) holds no raw samples (\(reader.sampleCount) samples, "
                             + "\(reader.unwoundSampleCount) unwound while recording): record with `sprof record --raw`")
        }
        unwinder = SampleUnwinder(source: .recordedPaths)
        var frames = 0
        for (sample, snapshot) in samples {
            frames += unwinder.unwind(sample, pid: sample.tgid, generation: snapshot?.generation ?? 0,
                                      mappings: snapshot?.mappings ?? []) { f, _ in f.count }
        }
        let failures = unwinder.cache.failures
        guard frames > samples.count, failures.isEmpty else {
            throw SetupError("SPROF_BENCH_RAW: \(path): \(frames) frames from \(samples.count) samples; "
                             + "binaries unavailable: \(failures.joined(separator: "; ")) "
                             + "(the recorded binaries must still be at their paths)")
        }
        self.samples = samples
        framesPerPass = frames
        passes = max(1, 250_000 / frames)
        let kib = unwinder.cache.memoryBytes / 1024
        describeInput("unwinder \(baseName(path)): \(samples.count) raw samples, \(frames) frames per pass "
                      + "(\(tenths(frames, samples.count)) a sample), "
                      + "\(passes) passes per iteration, \(unwinder.cache.statistics.loads) binaries, \(kib) KiB of tables")
    }

    /// One pass: every sample unwound; the frames produced.
    @inline(never) func pass() -> Int {
        var frames = 0
        for (sample, snapshot) in samples {
            frames &+= unwinder.unwind(sample, pid: sample.tgid, generation: snapshot?.generation ?? 0,
                                       mappings: snapshot?.mappings ?? []) { f, _ in f.count }
        }
        return frames
    }
}

let framesPerSecond = rateMetric("frames/s")

let benchmarks: @Sendable () -> Void = {
    guard let paths = pathList("SPROF_BENCH_RAW") else {
        Benchmark("Unwinder", configuration: configuration(rate: framesPerSecond, units: .kilo)) { (_: Benchmark, _: Int) in
        } setup: { () throws -> Int in
            throw SetupError("SPROF_BENCH_RAW is not set. Point it at raw recordings (FILE[:FILE...], made with "
                             + "`sprof record --raw -o FILE -- CMD`, as root), or run bench/micro/run, which records two.")
        }
        return
    }
    for path in paths {
        Benchmark("Unwinder \(baseName(path).replacingSuffix(".raw"))", configuration: configuration(rate: framesPerSecond, units: .kilo)) { (benchmark: Benchmark, recording: Recording) in
            let start = clockNanoseconds()
            var frames = 0
            for _ in 0..<recording.passes { frames &+= recording.pass() }
            let elapsed = clockNanoseconds() - start
            blackHole(frames)
            record(framesPerSecond, units: frames, nanoseconds: elapsed, in: benchmark)
        } setup: {
            try Recording(path: path)
        }
    }
}
