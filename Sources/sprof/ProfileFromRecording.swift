import Foundation
import SprofBase
import SprofCapture
import SprofELF
import SprofProfile
import SprofSymbols
import SprofUnwind
#if canImport(Glibc)
import Glibc
#endif

/// Turns a raw recording into a ``Profile``: raw samples are unwound now
/// (sprof's unwinder, or libunwind with `useLibunwind`), addresses named from
/// the recording's locations records or, where it has none, now.
///
/// The profile (pprof's conventions, plus sprof's of ``Profile``): sample
/// types `samples/count` and `cpu/nanoseconds` (one sampling period a
/// sample); labels `pid`, `tid`, `comm` (the process's name) and
/// `thread_name`; mappings with build-ids; one location per address as it
/// was seen (a return address and the same address as an innermost frame
/// can differ), its lines innermost first; a `[truncated: REASON]` location
/// outermost for a stack that could not be unwound to its root; lost
/// samples, the kernel and the host in the comments.
struct RecordingConverter {
    let reader: RawFileReader
    var useLibunwind = false
    var mangled = false

    func profile(progress: Progress? = nil) -> Profile {
        let meta = reader.metadata
        let frequency = Int64(max(meta.frequency, 1))
        let period = 1_000_000_000 / frequency
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count"), .init("cpu", "nanoseconds")])
        b.setPeriod(.init("cpu", "nanoseconds"), period)
        b.setTime(startNanos: Int64(clamping: meta.wallClockStartNanoseconds),
                  durationNanos: Int64(clamping: reader.stats?.durationNanoseconds ?? 0))
        b.addComment("sprof \(meta.sprofVersion) on \(meta.hostname), Linux \(meta.kernelRelease), \(meta.frequency) Hz, target \(meta.target)")
        if let stats = reader.stats {
            b.addComment("lost samples: \(stats.samplesLost) (kernel buffer or queue full; counted, not in the profile)")
            b.addComment("ended: \(stats.endReason)")
        } else {
            b.addComment("the recording did not finish: lost samples unknown")
        }

        let names = FrameNames(recorded: reader.locations, mangled: mangled)
        let unwinder = SampleUnwinder(source: .recordedPaths)
        let oracle = useLibunwind ? LibunwindUnwinder() : nil
        var locationIDs: [RawLocation.Key: UInt64] = [:]
        var truncatedIDs: [UnwindStop: UInt64] = [:]
        var stack: [UInt64] = []
        var user: [UInt64] = []
        var done = 0

        func mappingID(_ l: RawLocation, snapshot: RawMappingSnapshot?) -> UInt64 {
            switch SymbolizedLocation.Kind(rawValue: l.kind) {
            case .kernel:
                return b.mapping(start: 0xffff_8000_0000_0000, limit: .max, fileOffset: 0, file: l.module, buildID: "")
            case .jit:
                let m = snapshot?.mapping(containing: ProcessAddress(l.key.address))
                return b.mapping(start: m?.start.rawValue ?? l.key.address, limit: m?.end.rawValue ?? l.key.address + 1,
                                 fileOffset: 0, file: "[jit]", buildID: "")
            case .native:
                guard let m = snapshot?.mapping(containing: ProcessAddress(l.key.address)) else { return 0 }
                return b.mapping(start: m.start.rawValue, limit: m.end.rawValue, fileOffset: m.fileOffset.rawValue,
                                 file: ModuleFiles.plainPath(of: m), buildID: m.buildID?.description ?? "")
            default:
                return 0
            }
        }

        func locationID(_ l: RawLocation, snapshot: RawMappingSnapshot?) -> UInt64 {
            if let id = locationIDs[l.key] { return id }
            let mapping = mappingID(l, snapshot: snapshot)
            let lines = l.frames.map { f in
                Profile.Line(functionID: b.function(name: f.function, systemName: f.systemName, file: f.file), line: Int64(f.line))
            }
            if mapping != 0 {
                b.noteMappingHas(mapping, filenames: l.frames.contains { !$0.file.isEmpty },
                                 lineNumbers: l.frames.contains { $0.line > 0 }, inlineFrames: l.frames.count > 1)
            }
            let id = b.location(mappingID: mapping, address: l.key.address, lines: lines)
            locationIDs[l.key] = id
            return id
        }

        var first = true
        reader.forEachSample { sample, snapshot in
            let mappings = snapshot?.mappings ?? []
            let generation = snapshot?.generation ?? 0
            if first, let exe = reader.process(pid: sample.tgid)?.executablePath,
               let m = mappings.first(where: { $0.isExecutable && ModuleFiles.plainPath(of: $0) == exe }) {
                // pprof tools take the first mapping for the main binary ("File:" in -top).
                first = false
                _ = b.mapping(start: m.start.rawValue, limit: m.end.rawValue, fileOffset: m.fileOffset.rawValue,
                              file: exe, buildID: m.buildID?.description ?? "")
            }
            var stop = UnwindStop.complete
            user.removeAll(keepingCapacity: true)
            if let n = sample.userFrameCount {
                for i in 0..<n { user.append(sample.userFrame(i).rawValue) }
                stop = UnwindStop(rawValue: sample.unwindStop) ?? .badCFI
            } else if let oracle {
                let r = oracle.unwind(sample: sample, mappings: mappings, openFile: { $0.path })
                user = r.frames.map(\.rawValue)
                if r.frames.isEmpty { stop = .noUnwindInfo }
            } else {
                unwinder.unwind(sample, pid: sample.tgid, generation: generation, mappings: mappings) { frames, outcome in
                    stop = outcome.stop
                    user.append(contentsOf: frames)
                }
            }
            // Leaf first: kernel frames (innermost first), then user frames, then the truncation marker.
            stack.removeAll(keepingCapacity: true)
            let kernel = sample.kernelStack
            for (i, k) in kernel.enumerated() {
                stack.append(locationID(names.kernel(k, isReturnAddress: i > 0), snapshot: snapshot))
            }
            for (i, a) in user.enumerated() {
                stack.append(locationID(names.user(a, isReturnAddress: i > 0, pid: sample.tgid, snapshot: snapshot),
                                        snapshot: snapshot))
            }
            if stop != .complete && stop != .noUserRegisters {
                let id: UInt64
                if let known = truncatedIDs[stop] {
                    id = known
                } else {
                    let name = "[truncated: \(stop)]"
                    id = b.location(mappingID: 0, address: 0,
                                    lines: [.init(functionID: b.function(name: name, systemName: name, file: ""), line: 0)])
                    truncatedIDs[stop] = id
                }
                stack.append(id)
            }
            let process = reader.process(pid: sample.tgid)
            let comm = process?.command ?? sample.comm.description
            b.addSample(locationIDs: stack, values: [1, sample.weight > 0 ? Int64(clamping: sample.weight) : period],
                        labels: [.init(key: "pid", number: Int64(sample.tgid)), .init(key: "tid", number: Int64(sample.tid)),
                                 .init(key: "comm", string: comm.isEmpty ? sample.comm.description : comm),
                                 .init(key: "thread_name", string: sample.comm.description)])
            done += 1
            progress?.update(done, of: reader.sampleCount)
        }
        progress?.finish()
        reportUnavailable(names.unavailable)
        return b.profile
    }
}

/// A progress line on stderr for reports that take more than 1.5 s, only
/// when stderr is a terminal.
final class Progress {
    private let what: String
    private let start = DispatchTime.now().uptimeNanoseconds
    private var shown = false
    private var lastPercent = -1
    private let terminal = isatty(2) != 0

    init(_ what: String) { self.what = what }

    func update(_ done: Int, of total: Int) {
        guard terminal, done & 1023 == 0, total > 0 else { return }
        guard shown || DispatchTime.now().uptimeNanoseconds - start > 1_500_000_000 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent else { return }
        lastPercent = percent
        shown = true
        FileHandleStderr.write("\rsprof: \(what) \(percent)% (\(done) of \(total))")
    }

    func finish() {
        if shown { FileHandleStderr.write("\r\u{1b}[K") }
    }
}
