import ArgumentParser
import Foundation
import SprofBase
import SprofCapture
import SprofELF
import SprofFlameGraph
import SprofSymbols
import SprofUnwind

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unwind and summarize a recording.",
        discussion: """
            Reads a file written by `sprof record` and unwinds its samples offline with sprof's DWARF
            unwinder (or, with --unwinder libunwind, with libunwind's remote unwinder, the one perf uses),
            then prints folded stacks (Brendan Gregg's format: root;...;leaf COUNT). Stacks that could not
            be unwound to their outermost frame start with a `[truncated: reason]` frame, so a short stack
            is never mistaken for a whole one. Names are demangled (C++, Rust, Swift); inlined functions are
            frames of their own, marked `_[i]`; kernel frames end in `_[k]`, JIT frames (perf maps) in
            `_[j]`; an address nothing names is `module+0xOFFSET`. A recording names its addresses when it
            ends; a raw one (--raw) is named now, from the recorded paths.

            Examples:
              sprof report app.data --folded > app.folded
              sprof report app.data --stats
            """)

    @Argument(help: "A file written by `sprof record`.")
    var file: String

    @Flag(help: "Print folded stacks (the default).")
    var folded = false

    @Flag(help: "Print unwinding statistics instead: stops by reason, frames per second.")
    var stats = false

    @Option(help: "Unwinder: sprof (DWARF CFI, default) or libunwind (the oracle perf uses).")
    var unwinder = "sprof"

    @Flag(help: "Show names as the binaries state them (mangled C++, Rust and Swift names).")
    var noDemangle = false

    func validate() throws {
        guard ["sprof", "libunwind"].contains(unwinder) else { throw ValidationError("--unwinder must be sprof or libunwind") }
    }

    func run() throws {
        let reader: RawFileReader
        do { reader = try RawFileReader(path: file) } catch { fail("\(error)") }
        let names = FrameNames(recorded: reader.locations, mangled: noDemangle)
        var foldedStacks = FoldedStacks()
        let unwinder = SampleUnwinder(source: .recordedPaths)
        let oracle = unwinder_isLibunwind ? LibunwindUnwinder() : nil
        let start = DispatchTime.now().uptimeNanoseconds
        var stack: [String] = []
        reader.forEachSample { sample, snapshot in
            let mappings = snapshot?.mappings ?? []
            if stats {
                // First pass of --stats: load the binaries and count the stops; no names.
                unwinder.unwind(sample, pid: sample.tgid, generation: snapshot?.generation ?? 0, mappings: mappings) { _, _ in }
                return
            }
            stack.removeAll(keepingCapacity: true)
            let generation = snapshot?.generation ?? 0
            var stop = UnwindStop.complete
            // Innermost first; frame 0 is where the thread was, the rest are return addresses.
            var user: [UInt64] = []
            if let n = sample.userFrameCount {
                // Unwound while recording.
                user = (0..<n).map { sample.userFrame($0).rawValue }
                stop = UnwindStop(rawValue: sample.unwindStop) ?? .badCFI
            } else if let oracle {
                let r = oracle.unwind(sample: sample, mappings: mappings, openFile: { $0.path })
                user = r.frames.map(\.rawValue)
                if r.frames.isEmpty { stop = .noUnwindInfo }
            } else {
                unwinder.unwind(sample, pid: sample.tgid, generation: generation, mappings: mappings) { frames, outcome in
                    stop = outcome.stop
                    user = Array(frames)
                }
            }
            stack.append(sample.comm.description)
            if stop != .complete && stop != .noUserRegisters { stack.append("[truncated: \(stop)]") }
            for i in stride(from: user.count - 1, through: 0, by: -1) {
                names.appendFolded(names.user(user[i], isReturnAddress: i > 0, pid: sample.tgid, generation: generation,
                                              mappings: mappings), to: &stack)
            }
            let kernel = sample.kernelStack
            for i in stride(from: kernel.count - 1, through: 0, by: -1) {
                names.appendFolded(names.kernel(kernel[i], isReturnAddress: i > 0), to: &stack)
            }
            foldedStacks.add(stack)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if stats {
            // Unwinding alone, binaries already loaded: a second pass over the
            // raw samples, timed without symbolization or output.
            // The samples are decoded into memory first, so this times the unwinder alone.
            var decoded: [(RawSample, RawMappingSnapshot?)] = []
            reader.forEachSample { sample, snapshot in
                if sample.userFrameCount == nil { decoded.append((sample, snapshot)) }
            }
            let timedUnwinder = SampleUnwinder(cache: unwinder.cache, source: .recordedPaths)
            let passes = max(1, min(50, 200_000 / max(decoded.count, 1)))
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<passes {
                for (sample, snapshot) in decoded {
                    timedUnwinder.unwind(sample, pid: sample.tgid, generation: snapshot?.generation ?? 0,
                                         mappings: snapshot?.mappings ?? []) { _, _ in }
                }
            }
            let unwindSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if decoded.isEmpty {
                print("unwound         while recording (no raw samples to time; record with --raw to measure)")
            } else {
                print(String(format: "unwind only     %.0f samples/s, %.0f frames/s (%d passes over samples in memory, tables built)",
                             Double(timedUnwinder.samples) / unwindSeconds, Double(timedUnwinder.frames) / unwindSeconds, passes))
            }
            print("samples         \(unwinder.samples)")
            print("frames          \(unwinder.frames)")
            print(String(format: "first pass      %.3f s (%.0f samples/s, %.0f frames/s: file decode and table building included)",
                         elapsed, Double(unwinder.samples) / elapsed, Double(unwinder.frames) / elapsed))
            for s in UnwindStop.allCases where unwinder.stops[Int(s.rawValue)] > 0 {
                print("stop            \(unwinder.stops[Int(s.rawValue)])  \(s)")
            }
            guard !decoded.isEmpty else { return }
            let c = unwinder.cache.statistics
            print("binaries        \(c.loads) loaded, \(c.failures) unavailable, \(unwinder.cache.memoryBytes / 1024) KiB of tables")
            let rc = unwinder.ruleCacheCounts
            print(String(format: "rule cache      %.1f%% hits over one pass (%llu hits, %llu misses)",
                         100 * Double(rc.hits) / Double(max(rc.hits + rc.misses, 1)), rc.hits, rc.misses))
            let lookups = c.hits + c.loads + c.failures
            print(String(format: "module cache    %d lookups, %.1f%% hits (one lookup per mapping snapshot and binary)",
                         lookups, 100 * Double(c.hits) / Double(max(lookups, 1))))
            for (path, bytes) in unwinder.cache.tableSizes.sorted(by: { $0.1 > $1.1 }) {
                print("table           \(bytes / 1024) KiB  \(path)")
            }
            for f in unwinder.cache.failures { print("unavailable     \(f)") }
        } else {
            print(foldedStacks.rendered(), terminator: "")
            reportUnavailable(names.unavailable)
        }
    }

    private var unwinder_isLibunwind: Bool { unwinder == "libunwind" }
}
