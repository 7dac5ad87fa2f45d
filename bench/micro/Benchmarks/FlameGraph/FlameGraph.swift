// Flame-graph renderer, lines/s: SprofFlameGraph parsing folded stacks,
// building its stack tree, laying out and writing the SVG into memory (what
// `sprof flamegraph IN -o OUT` does between reading and writing the file),
// default options (1200 px, frames under 0.1 px merged away).
//
// Input, generated in setup from a fixed seed: 100,000 distinct folded lines
// shaped like bench/flamegraph.py's (same recipe, Swift's own generator, so
// not the same bytes): random walks 10–40 deep down a call graph of 3,000 C,
// C++, Rust, inlined `_[i]` and `lib.so+0x…` names plus 200 JIT `_[j]` ones,
// kernel `_[k]` tails on a fifth of the stacks, heavy-tailed counts, sorted
// as stackcollapse-*.pl writes them.
import Benchmark
import MicroSupport
import SprofFlameGraph
#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64 (Steele, Lea, Flood 2014): a fixed seed gives the same input on
/// every machine (with the same standard library's `random(in:using:)` and
/// `shuffled(using:)`), which SystemRandomNumberGenerator would not.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    mutating func pick<T>(_ a: [T]) -> T { a[Int.random(in: 0..<a.count, using: &self)] }
    mutating func sample<T>(_ a: [T], _ n: Int) -> [T] { Array(a.shuffled(using: &self).prefix(n)) }
}

func makeNames(_ rng: inout SplitMix64, _ n: Int) -> [String] {
    let words = ("alloc buffer cache check commit compress decode dispatch drop encode entry event fetch "
                 + "flush frame handle hash index init insert interp io job key load lock lookup map merge "
                 + "node open parse poll process query read reader recv record reduce render request reset "
                 + "resolve run scan schedule send serialize socket sort split state step store stream sync "
                 + "table task update validate visit wait walk worker write").split(separator: " ").map(String.init)
    let classes = "Parser Buffer Request Session Vec Map Node Table Cache Engine Worker Stream Frame"
        .split(separator: " ").map(String.init)
    var names: [String] = []
    var seen = Set<String>()
    while names.count < n {
        let k = rng.unit()
        let a = rng.pick(words), b = rng.pick(words)
        let name: String
        switch k {
        case ..<0.45: name = "\(a)_\(b)"
        case ..<0.65: name = "app::\(rng.pick(classes))::\(a)_\(b)"
        case ..<0.75: name = "std::vector<\(rng.pick(classes))<int>>::\(a)"
        case ..<0.85: name = "core::\(a)::\(b)<T>"
        case ..<0.93: name = "\(a)_\(b)_[i]"
        default: name = "lib\(a).so+0x\(String(Int.random(in: 0x1000..<0xfffff, using: &rng), radix: 16))"
        }
        if seen.insert(name).inserted { names.append(name) }
    }
    return names
}

/// `lines` distinct folded lines, sorted, newline-terminated, as UTF-8.
func generateFolded(lines: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(state: seed)
    let user = makeNames(&rng, 3000)
    let kernel = ["do", "sys", "vfs", "ext4", "tcp", "ip", "sock", "page", "mm", "irq"].flatMap { a in
        ["read", "write", "fault", "sendmsg", "recvmsg", "poll", "open", "lookup", "alloc", "free", "wake",
         "schedule", "softirq", "copy", "flush", "timer", "futex", "mmap", "unmap", "exit", "clone", "signal",
         "epoll", "splice", "ioctl", "stat", "close"].map { "\(a)_\($0)_[k]" }
    }
    let jit = (0..<200).map { "Interpreted::method_\($0)_[j]" }
    // The call graph: every function calls 2 to 8 others.
    var callees: [String: [String]] = [:]
    for f in user { callees[f] = rng.sample(user, Int.random(in: 2...8, using: &rng)) }
    for f in rng.sample(user, 100) { callees[f]! += rng.sample(jit, 2) }
    for f in jit { callees[f] = rng.sample(jit, 3) + rng.sample(user, 2) }
    var kcallees: [String: [String]] = [:]
    for f in kernel { kcallees[f] = rng.sample(kernel, 4) }
    let roots = (0..<20).map { "comm\($0)" }
    var starts: [String: [String]] = [:]
    for r in roots { starts[r] = rng.sample(user, 3) }
    var out: [String] = []
    var seen = Set<String>()
    while out.count < lines {
        let root = rng.pick(roots)
        let depth = Int.random(in: 10...40, using: &rng)
        let ktail = rng.unit() < 0.2 ? Int.random(in: 3...8, using: &rng) : 0
        var f = rng.pick(starts[root]!)
        var stack = [root, f]
        while stack.count < depth - ktail {
            f = rng.pick(callees[f]!)
            stack.append(f)
        }
        if ktail > 0 {
            stack.append("entry_SYSCALL_64_[k]")
            f = rng.pick(kernel)
            while stack.count < depth {
                stack.append(f)
                f = rng.pick(kcallees[f]!)
            }
        }
        let line = stack.joined(separator: ";")
        guard seen.insert(line).inserted else { continue }
        // Pareto(α = 1.2) by inversion, as Python's random.paretovariate.
        let count = 1 + Int(1 / pow12(1 - rng.unit()))
        out.append("\(line) \(count)\n")
    }
    out.sort()
    return Array(out.joined().utf8)
}

/// u^(1/1.2).
func pow12(_ u: Double) -> Double { pow(u, 1 / 1.2) }

let linesPerSecond = rateMetric("lines/s")
let lineCount = 100_000

let benchmarks: @Sendable () -> Void = {
    Benchmark("FlameGraph render 100k lines",
              configuration: configuration(rate: linesPerSecond, units: .kilo, maxIterations: 100)) { (benchmark: Benchmark, folded: [UInt8]) in
        let start = clockNanoseconds()
        let svg: String
        do {
            let stacks = try FoldedStacks(parsingUTF8: folded)
            svg = try renderFlameGraph(stacks)
        } catch {
            benchmark.error("\(error)")
            return
        }
        let elapsed = clockNanoseconds() - start
        blackHole(svg.utf8.count)
        record(linesPerSecond, units: lineCount, nanoseconds: elapsed, in: benchmark)
    } setup: {
        let folded = generateFolded(lines: lineCount, seed: 1)
        let stacks = try FoldedStacks(parsingUTF8: folded)
        let svg = try renderFlameGraph(stacks)
        describeInput("flamegraph: \(lineCount) folded lines, \(folded.count) bytes, \(stacks.nameCount) names, "
                      + "SVG \(svg.utf8.count) bytes")
        return folded
    }
}
