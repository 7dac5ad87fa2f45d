// What the three benchmark targets share: the rate metrics (frames/s,
// lines/s), a monotonic clock, the run length, and setup errors that say
// what to do.
import Benchmark
#if canImport(Glibc)
import Glibc
#endif

/// A rate in the unit the issue asks for (`frames/s`, `lines/s`), one value
/// per iteration: the work units of the measured region over its own
/// monotonic time. Larger is better, so baseline comparisons flag a drop.
/// package-benchmark's `throughput` is iterations per second and its scaling
/// factors are fixed powers of ten, so a count of frames that comes from the
/// data (samples × their frames) cannot be its unit; this custom metric can.
public func rateMetric(_ unit: String) -> BenchmarkMetric {
    .custom(unit, polarity: .prefersLarger, useScalingFactor: false)
}

/// CLOCK_MONOTONIC in nanoseconds (what package-benchmark's wall clock reads too).
@inline(__always) public func clockNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Records `units` done in `nanoseconds` as a rate, per second.
@inline(__always) public func record(_ metric: BenchmarkMetric, units: Int, nanoseconds: UInt64, in benchmark: Benchmark) {
    benchmark.measurement(metric, Int((Double(units) * 1e9 / Double(max(nanoseconds, 1))).rounded()))
}

/// The run every benchmark here uses, fixed so that two runs are comparable
/// and the whole suite stays near three minutes on a 2-core machine: one
/// warm-up iteration, then iterations until `seconds` have passed or
/// `maxIterations` ran. Metrics: the rate (fixed `units`, so a diff never
/// compares "45 M" with "450 K"), wall clock per iteration, and mallocs per
/// iteration (hot paths are meant to allocate nothing per frame).
public func configuration(rate: BenchmarkMetric, units: BenchmarkUnits, seconds: Int = 4,
                          maxIterations: Int = 10_000) -> Benchmark.Configuration {
    Benchmark.Configuration(metrics: [rate, .wallClock, .mallocCountTotal],
                            timeUnits: .microseconds,
                            units: [rate: units],
                            warmupIterations: 1,
                            maxDuration: .seconds(seconds),
                            maxIterations: maxIterations)
}

/// A setup failure, printed by the benchmark runner as is.
public struct SetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `NAME=a:b:c` split on `:`, empty parts dropped; nil when unset or empty.
public func pathList(_ name: String) -> [String]? {
    guard let value = getenv(name).map({ String(cString: $0) }) else { return nil }
    let parts = value.split(separator: ":").map(String.init)
    return parts.isEmpty ? nil : parts
}

/// The last path component.
public func baseName(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}

/// One line on stderr describing a benchmark's input, printed in setup (the
/// benchmark runner passes it on to its stdout, before the tables; the run
/// script moves these lines into RESULTS.md's header).
public func describeInput(_ line: String) {
    let text = "input: \(line)\n"
    _ = text.utf8.withContiguousStorageIfAvailable { write(2, $0.baseAddress, $0.count) }
}

/// `a / b` with one decimal, without Foundation.
public func tenths(_ a: Int, _ b: Int) -> String {
    let t = (a * 10 + b / 2) / max(b, 1)
    return "\(t / 10).\(t % 10)"
}

extension String {
    /// Self without `suffix` at its end, if it has it.
    public func replacingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
