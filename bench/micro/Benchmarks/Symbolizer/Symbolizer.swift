// Symbolizer, frames/s: SprofSymbols naming a fixed list of addresses in real
// binaries, the list bench/symbolize.py uses: every function symbol's first
// byte and three more points inside it (start + size·k/4), sorted, at most
// 20,000 (evenly thinned). One address is one frame of a stack; the inline
// frames an address expands to are not counted in frames/s (setup prints how
// many there are).
//
// Binaries: the libc.so.6 and libswiftCore.so this process maps (a C library
// with only .dynsym; the Swift runtime with .symtab and 4.9 MiB of DWARF),
// then any in SPROF_BENCH_BINARIES=FILE[:FILE...] (bench/micro/run adds
// rust_legacy of Tests/Fixtures/symbols: Rust's legacy mangling, DWARF, the
// parts of std it links; cpp_names where rustc is missing).
// Three benchmarks per binary:
//   cold    Symbolizer and module opened (ELF mapped, symbols read, DWARF
//           opened, debug-file search) and every address looked up once, all
//           measured: what `sprof record` pays at the end of a recording.
//   warm    the same, but opening the module is outside the measured region:
//           first lookups only (symbol search, libdw's DWARF walk, demangling).
//   cached  module opened and every address looked up once in setup; measured:
//           the remembered answers (two hash lookups), ≥ 200,000 per iteration:
//           what a report over a long recording pays per repeated frame.
import Benchmark
import MicroSupport
import SprofBase
import SprofSymbols
#if canImport(Glibc)
import Glibc
#endif

/// Addresses as bench/symbolize.py picks them.
func addresses(of path: String, limit: Int = 20_000) throws -> [StatedAddress] {
    let module: SymbolizedModule
    do { module = try Symbolizer().module(path: path) } catch { throw SetupError("\(path): \(error)") }
    guard let symbols = module.symbols, !symbols.isEmpty else { throw SetupError("\(path): no function symbols") }
    var set = Set<UInt64>()
    for s in symbols where s.size > 0 {
        for k in 0..<UInt64(4) { set.insert(s.address.rawValue + s.size * k / 4) }
    }
    var all = set.sorted()
    if all.count > limit {
        let step = Double(all.count) / Double(limit)
        all = (0..<limit).map { all[Int(Double($0) * step)] }
    }
    return all.map { StatedAddress($0) }
}

/// Paths of the mapped files of this process whose name starts with `prefix`.
func mapped(_ prefix: String) -> String? {
    guard let f = fopen("/proc/self/maps", "r") else { return nil }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), f) != nil {
        let text = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = text.firstIndex(of: "/") else { continue }
        let path = String(text[slash...])
        if baseName(path).hasPrefix(prefix) { return path }
    }
    return nil
}

/// Looks every address up once in `module`: frames (addresses) and inline frames.
@inline(never) func lookUp(_ list: [StatedAddress], in module: SymbolizedModule) -> (frames: Int, inlined: Int) {
    var inlined = 0
    for a in list {
        let f = module.frames(at: a)
        inlined &+= max(f.count - 1, 0)
    }
    return (list.count, inlined)
}

final class Input: @unchecked Sendable {
    let path: String
    let list: [StatedAddress]
    /// Opened and filled in setup, for `cached`.
    let module: SymbolizedModule
    /// Rounds over `list` per `cached` iteration (≥ 200,000 lookups).
    let rounds: Int

    init(path: String, describe: Bool) throws {
        self.path = path
        list = try addresses(of: path)
        do { module = try Symbolizer().module(path: path) } catch { throw SetupError("\(path): \(error)") }
        let (_, inlined) = lookUp(list, in: module)
        rounds = max(1, 200_000 / list.count)
        if describe {
            let named = list.filter { !module.frames(at: $0).isEmpty }.count
            describeInput("symbolizer \(baseName(path)): \(list.count) addresses, \(named) named, "
                          + "\(inlined) inline frames besides (not counted), DWARF: \(module.hasDWARF ? "yes" : "no"), "
                          + "symbols: \(module.symbols?.table?.rawValue ?? "none") (\(module.symbols?.count ?? 0))")
        }
    }
}

let framesPerSecond = rateMetric("frames/s")

let benchmarks: @Sendable () -> Void = {
    var binaries = [mapped("libc.so"), mapped("libswiftCore.so")].compactMap { $0 }
    binaries += pathList("SPROF_BENCH_BINARIES") ?? []
    for path in binaries {
        let name = baseName(path)
        Benchmark("Symbolizer cold \(name)",
                  configuration: configuration(rate: framesPerSecond, units: .kilo, maxIterations: 50)) { (benchmark: Benchmark, input: Input) in
            let start = clockNanoseconds()
            let module: SymbolizedModule
            do { module = try Symbolizer().module(path: input.path) } catch { benchmark.error("\(error)"); return }
            let (frames, _) = lookUp(input.list, in: module)
            let elapsed = clockNanoseconds() - start
            record(framesPerSecond, units: frames, nanoseconds: elapsed, in: benchmark)
        } setup: {
            try Input(path: path, describe: true)
        }
        Benchmark("Symbolizer warm \(name)",
                  configuration: configuration(rate: framesPerSecond, units: .kilo, maxIterations: 50)) { (benchmark: Benchmark, input: Input) in
            let module: SymbolizedModule
            do { module = try Symbolizer().module(path: input.path) } catch { benchmark.error("\(error)"); return }
            withExtendedLifetime(module) {
                benchmark.startMeasurement()
                let start = clockNanoseconds()
                let (frames, _) = lookUp(input.list, in: module)
                let elapsed = clockNanoseconds() - start
                benchmark.stopMeasurement()
                record(framesPerSecond, units: frames, nanoseconds: elapsed, in: benchmark)
            }
        } setup: {
            try Input(path: path, describe: false)
        }
        Benchmark("Symbolizer cached \(name)",
                  configuration: configuration(rate: framesPerSecond, units: .kilo)) { (benchmark: Benchmark, input: Input) in
            let start = clockNanoseconds()
            var frames = 0
            for _ in 0..<input.rounds { frames &+= lookUp(input.list, in: input.module).frames }
            let elapsed = clockNanoseconds() - start
            record(framesPerSecond, units: frames, nanoseconds: elapsed, in: benchmark)
        } setup: {
            try Input(path: path, describe: false)
        }
    }
}
