import ArgumentParser
import Foundation
import SprofBase
import SprofCapture
import SprofELF
import SprofFlameGraph
import SprofProfile
import SprofStore
import SprofSymbols
import SprofUnwind
#if canImport(Glibc)
import Glibc
#endif

/// `sprof record`'s default output, which `sprof report` reads when given no file.
let defaultProfilePath = "sprof.pb.gz"

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a profile: top functions, folded stacks, a flame graph, or pprof.",
        discussion: """
            Reads a profile written by `sprof record` (gzipped pprof, default ./sprof.pb.gz), any other
            pprof file, or a raw recording (`sprof record --raw`, unwound and named now). Output, one of:
              --top                 flat and cumulative tables like `pprof -top` (the default on a terminal)
              --folded              folded stacks, root first, the process name as the first frame
                                    (the default when stdout is not a terminal)
              --flamegraph [OUT]    an interactive SVG flame graph (default flamegraph.svg; its path is printed)
              --pprof OUT           the profile as gzipped pprof (e.g. after filtering, or from a raw recording)
              --speedscope OUT      the profile for speedscope (https://www.speedscope.app)
            Names are demangled (C++, Rust, Swift); inlined functions are frames of their own, marked `_[i]`
            in folded stacks; kernel frames `_[k]`, JIT frames (perf maps) `_[j]`; an address nothing
            names is `module+0xOFFSET`. A stack that could not be unwound to its root starts with a
            `[truncated: reason]` frame, so a short stack is never mistaken for a whole one.

            Examples:
              sprof report                                  top functions of ./sprof.pb.gz
              sprof report --flamegraph                     ./flamegraph.svg
              sprof report app.pb.gz --folded > app.folded
              sprof report app.pb.gz --flamegraph app.svg --pid 1234 --focus 'parse.*'
              sprof report new.pb.gz --flamegraph diff.svg --diff old.pb.gz
              sprof report app.raw --stats                  unwinding statistics of a raw recording
              sprof report --store DIR --since 10m --where comm=nginx    sprof agent's windows, merged
              sprof report --store DIR --since 3h --until 2h --flamegraph
            """)

    @Argument(help: "A profile (pprof) or raw recording; default ./\(defaultProfilePath).")
    var file: String = defaultProfilePath

    @Flag(help: "Flat and cumulative tables, like pprof -top.")
    var top = false

    @Flag(help: "Folded stacks (Brendan Gregg's format).")
    var folded = false

    @Option(help: ArgumentHelp("Write an interactive SVG flame graph (default flamegraph.svg).", valueName: "out.svg"))
    var flamegraph: String?

    @Option(help: ArgumentHelp("Write the profile as gzipped pprof.", valueName: "out.pb.gz"))
    var pprof: String?

    @Option(help: ArgumentHelp("Write the profile for speedscope (https://www.speedscope.app).", valueName: "out.json"))
    var speedscope: String?

    @Option(help: ArgumentHelp("With --flamegraph: a differential flame graph against this base profile (growth red, shrink blue).", valueName: "base"))
    var diff: String?

    @Option(help: "Rows of --top.")
    var limit = 30

    @Option(help: ArgumentHelp("Only these processes.", valueName: "pid,..."))
    var pid: String?

    @Option(help: ArgumentHelp("Only these threads.", valueName: "tid,..."))
    var tid: String?

    @Option(help: ArgumentHelp("Only processes or threads of these names.", valueName: "name,..."))
    var comm: String?

    @Option(help: ArgumentHelp("Only samples with a frame matching this regular expression.", valueName: "regex"))
    var focus: String?

    @OptionGroup var look: FlameGraphLook

    @Option(help: ArgumentHelp("The value to show: samples, cpu (ns on CPU), offcpu (ns waiting), waits, or both (cpu + offcpu ns). Default: both for a profile with off-CPU waits, else samples.", valueName: "type"))
    var value: String?

    @Flag(help: "Unwinding statistics of a raw recording instead: stops by reason, frames per second.")
    var stats = false

    @Option(help: "Unwinder for raw recordings: sprof (DWARF CFI, default) or libunwind (the oracle perf uses).")
    var unwinder = "sprof"

    @Flag(help: "Show names as the binaries state them (mangled C++, Rust and Swift names).")
    var noDemangle = false

    @Option(help: ArgumentHelp("Merge the windows of this store (`sprof agent`'s directory) instead of reading a file.", valueName: "dir"))
    var store: String?

    @Option(help: ArgumentHelp("With --store: windows from this time on: a duration before now (30s, 10m, 2h, 1d), an RFC 3339 time or unix seconds. Default: the first.", valueName: "time"))
    var since: String?

    @Option(help: ArgumentHelp("With --store: windows before this time (as --since). Default: the last.", valueName: "time"))
    var until: String?

    @Option(name: .customLong("where"), help: ArgumentHelp("With --store: only samples with this label (comm=nginx, pid=42, container_id=ID); different keys must all hold, a repeated key means alternatives.", valueName: "key=value"))
    var whereLabels: [String] = []

    func validate() throws {
        guard ["sprof", "libunwind"].contains(unwinder) else { throw ValidationError("--unwinder must be sprof or libunwind") }
        if diff != nil && flamegraph == nil { throw ValidationError("--diff draws a differential flame graph: add --flamegraph [OUT]") }
        if let focus { do { _ = try Regex(focus) } catch { throw ValidationError("--focus \(focus): not a regular expression: \(error)") } }
        try validateStore()
    }

    func run() throws {
        if stats {
            let reader: RawFileReader
            do { reader = try RawFileReader(path: self.file) } catch { fail("--stats needs a raw recording (sprof record --raw): \(error)") }
            printStats(reader)
            return
        }
        let (file, loaded) = store.map(loadStore) ?? (self.file, loadProfile(self.file))
        try show(loaded, name: file)
    }

    /// Every output of `report` for `loaded` (read from a file or a store, or
    /// made by `sprof query` from ClickHouse); `file` names it in titles and messages.
    func show(_ loaded: Profile, name file: String) throws {
        let value = self.value ?? (loaded.valueIndex("offcpu") != nil ? "both" : "samples")
        let (profile, valueIndex) = Self.selectValue(value, of: loaded, file: file)
        let filter = try makeFilter()
        var wrote = false
        if let out = pprof {
            var p = loaded
            if !filter.isEmpty { p.samples = p.samples.filter { p.matches($0, filter) } }
            do {
                try writeAtomically(try Pprof.encode(p), to: out)
            } catch { fail("\(error)") }
            FileHandleStderr.write("sprof: wrote \(out)\n")
            wrote = true
        }
        if let out = speedscope {
            do {
                try writeAtomically(try profile.speedscope(name: (file as NSString).lastPathComponent, valueIndex: valueIndex,
                                                           mangled: noDemangle, filter: filter), to: out)
            } catch { fail("\(error)") }
            FileHandleStderr.write("sprof: wrote \(out)\n")
            wrote = true
        }
        if let out = flamegraph {
            let stacks = foldedStacks(profile, valueIndex: valueIndex, filter: filter)
            let name = (file as NSString).lastPathComponent
            var options = look.options(defaultTitle: diff.map { "\(($0 as NSString).lastPathComponent) → \(name)" } ?? name)
            options.countName = ["cpu", "offcpu", "both"].contains(value) ? "ns" : value == "waits" ? "waits" : "samples"
            let svg: String
            do {
                if let diff {
                    let (base, baseIndex) = Self.selectValue(value, of: loadProfile(diff), file: diff)
                    let baseStacks = foldedStacks(base, valueIndex: baseIndex, filter: filter)
                    svg = try renderDifferentialFlameGraph(base: baseStacks, new: stacks, options: options)
                } else {
                    svg = try renderFlameGraph(stacks, options: options)
                }
            } catch { fail("\(file): \(error)") }
            do { try writeAtomically(Array(svg.utf8), to: out) } catch { fail("\(error)") }
            print(out)
            wrote = true
        }
        if wrote && !top && !folded { return }
        if folded || (!top && isatty(1) == 0) {
            print(Profile.renderFolded(profile.foldedStacks(valueIndex: valueIndex, mangled: noDemangle, filter: filter).filter { $0.value != 0 }), terminator: "")
        } else {
            let (rows, total) = profile.top(valueIndex: valueIndex, mangled: noDemangle, filter: filter)
            if total == 0 { fail(filter.isEmpty ? "\(file) has no samples" : "no samples of \(file) match the filters") }
            print(Profile.renderTop(rows, total: total, limit: limit, unit: profile.sampleTypes[valueIndex].unit == "count" ? profile.sampleTypes[valueIndex].type : profile.sampleTypes[valueIndex].unit), terminator: "")
        }
    }

    /// The profile and value index to show `value` from: "both" adds a
    /// column, CPU plus off-CPU nanoseconds, so on- and off-CPU stacks share
    /// one graph in one unit.
    static func selectValue(_ value: String, of profile: Profile, file: String) -> (Profile, Int) {
        if value == "both" {
            guard let cpu = profile.valueIndex("cpu") else { fail("\(file) has no cpu values; it has \(profile.sampleTypes.map(\.type).joined(separator: ", "))") }
            guard let off = profile.valueIndex("offcpu") else {
                fail("\(file) has no off-CPU waits (record with --off-cpu); --value cpu shows its on-CPU time")
            }
            return (profile.addingSum(of: [cpu, off], as: .init("wall", "nanoseconds")), profile.sampleTypes.count)
        }
        guard let index = profile.valueIndex(value) ?? (value == "samples" ? 0 : nil) else {
            let hint = value == "offcpu" || value == "waits" ? " (record with --off-cpu for off-CPU waits)" : ""
            fail("\(file) has no \(value) values; it has \(profile.sampleTypes.map(\.type).joined(separator: ", "))\(hint)")
        }
        return (profile, index)
    }

    func makeFilter() throws -> SampleFilter {
        var f = SampleFilter()
        func numbers(_ text: String?, _ flag: String) throws -> Set<Int64> {
            guard let text else { return [] }
            var out = Set<Int64>()
            for part in text.split(separator: ",") {
                guard let n = Int64(part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("\(flag) \(text): expected numbers like 1234,5678") }
                out.insert(n)
            }
            return out
        }
        f.pids = try numbers(pid, "--pid")
        f.tids = try numbers(tid, "--tid")
        f.comms = Set((comm ?? "").split(separator: ",").map(String.init))
        if let focus { f.focus = try Regex(focus) }
        return f
    }

    func foldedStacks(_ profile: Profile, valueIndex: Int, filter: SampleFilter) -> FoldedStacks {
        var stacks = FoldedStacks()
        for (stack, v) in profile.foldedStacks(valueIndex: valueIndex, mangled: noDemangle, filter: filter) where v > 0 {
            stacks.add(stack, count: UInt64(v))
        }
        return stacks
    }

    /// A pprof file, or a raw recording turned into a profile now.
    func loadProfile(_ path: String) -> Profile {
        guard let f = fopen(path, "r") else {
            if path == defaultProfilePath {
                fail("no \(path) here: record one with `sprof record -p PID` or `sprof record -- CMD`, or name a file")
            }
            fail("\(path): \(String(cString: strerror(errno)))")
        }
        var magic = [UInt8](repeating: 0, count: 8)
        let n = fread(&magic, 1, 8, f)
        fclose(f)
        if n == 8 && magic == Array("SPROFRAW".utf8) {
            let reader: RawFileReader
            do { reader = try RawFileReader(path: path) } catch { fail("\(error)") }
            for w in reader.warnings { FileHandleStderr.write("sprof: \(path): \(w)\n") }
            var c = RecordingConverter(reader: reader)
            c.useLibunwind = unwinder == "libunwind"
            return c.profile(progress: Progress("reading \(path)"))
        }
        do { return try Pprof.read(path: path) } catch { fail("\(error)") }
    }

    func printStats(_ reader: RawFileReader) {
        let unwinder = SampleUnwinder(source: .recordedPaths)
        let start = DispatchTime.now().uptimeNanoseconds
        reader.forEachSample { sample, snapshot in
            // First pass: load the binaries and count the stops; no names.
            unwinder.unwind(sample, pid: sample.tgid, generation: snapshot?.generation ?? 0, mappings: snapshot?.mappings ?? []) { _, _ in }
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
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
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same
/// directory, fsync'ed, then renamed), so the file appears whole or not at all.
///
/// Mode 0600 for every output, profiles and the flame graphs and speedscope
/// files the user names alike: each holds the same command lines and
/// function names as the profile it was drawn from (perf writes perf.data
/// 0600 too); `chmod` it to share it.
func writeAtomically(_ bytes: [UInt8], to path: String) throws(CaptureError) {
    let file = try AtomicFile(destination: path)
    try file.write(bytes)
    try file.commit()
}

// MARK: - --store

extension Report {
    func validateStore() throws {
        guard let store else {
            if since != nil || until != nil || !whereLabels.isEmpty {
                throw ValidationError("--since, --until and --where select the windows of a store: add --store DIR")
            }
            return
        }
        if file != defaultProfilePath { throw ValidationError("give a profile (\(file)) or --store \(store), not both") }
        if stats { throw ValidationError("--stats needs a raw recording; a store holds profiles") }
        for (flag, text) in [("--since", since), ("--until", until)] {
            if let text { do { _ = try StoreTime.parse(text) } catch { throw ValidationError("\(flag) \(error)") } }
        }
        for text in whereLabels { do { _ = try LabelMatch(parsing: text) } catch { throw ValidationError("\(error)") } }
    }

    /// `--store DIR`: the windows in the range merged (ProfileStore.load),
    /// and the name the report gives it. Files it had to leave out are named
    /// on stderr; the report goes on without them.
    func loadStore(_ directory: String) -> (String, Profile) {
        let now = Date()
        let store: ProfileStore
        do { store = try ProfileStore(directory: directory, create: false) } catch { fail("--store \(error)") }
        var since: Date?, until: Date?
        var filters: [LabelMatch] = []
        // Checked by validate(); parsed again here against one `now`.
        do { if let s = self.since { since = try StoreTime.parse(s, now: now) } } catch { fail("--since \(error)") }
        do { if let u = self.until { until = try StoreTime.parse(u, now: now) } } catch { fail("--until \(error)") }
        do { for text in whereLabels { filters.append(try LabelMatch(parsing: text)) } } catch { fail("\(error)") }
        let loaded: ProfileStore.Loaded
        do { loaded = try store.load(since: since, until: until, where: filters) } catch { fail("\(error)") }
        for s in loaded.skipped { FileHandleStderr.write("sprof: skipped \(s)\n") }
        let range = "between \(since.map(StoreTime.format) ?? "the beginning") and \(until.map(StoreTime.format) ?? "the end") in \(store.directory)"
        guard let first = loaded.windows.first, let last = loaded.windows.last else {
            fail("none of the \(loaded.skipped.count) files \(range) could be read (see above)")
        }
        if loaded.profile.samples.isEmpty {
            fail(filters.isEmpty ? "the \(loaded.windows.count) windows \(range) have no samples"
                 : "no samples match --where \(filters.map(\.description).joined(separator: " --where ")) in the \(loaded.windows.count) windows \(range)")
        }
        func time(_ nanos: Int64) -> String { StoreTime.format(Date(timeIntervalSince1970: Double(nanos) / 1e9)) }
        let windows = loaded.windows.count == 1 ? "1 window" : "\(loaded.windows.count) windows"
        return ("\(store.directory) (\(windows), \(time(first.startNanos)) – \(time(last.endNanos)))", loaded.profile)
    }
}
