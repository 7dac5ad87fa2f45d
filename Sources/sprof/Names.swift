import SprofBase
import SprofCapture
import SprofSymbols

extension RawLocation {
    /// The file form of a symbolized location.
    init(key: Key, _ l: SymbolizedLocation) {
        self.init(key: key, kind: l.kind.rawValue, module: l.module, moduleOffset: l.moduleOffset,
                  frames: l.frames.map {
                      Frame(function: $0.function, systemName: $0.systemName, file: $0.file ?? "",
                            line: UInt32(clamping: $0.line), isInlined: $0.isInlined)
                  })
    }
}

/// Makes a symbolizer as sprof runs it: debuginfod when `DEBUGINFOD_URLS` is set.
func makeSymbolizer(perfMapMaxBytes: Int = PerfMap.defaultMaxBytes) -> Symbolizer {
    var options = Symbolizer.Options()
    options.debuginfod = DebuginfodClient.fromEnvironment()
    options.perfMapMaxBytes = perfMapMaxBytes
    return Symbolizer(options: options)
}

/// Collects the addresses of a recording as samples are written and names
/// them all at its end (`sprof record`), while the processes' files are
/// certainly present: through `/proc/PID/root` and `/proc/PID/map_files` for
/// a live process, by path and build-id for one that has exited.
final class RecordingSymbolizer: RecordingSymbolization {
    private struct SnapshotKey: Hashable { var pid: Int32; var generation: UInt64 }
    /// Each mapping snapshot seen (sorted by start, looked up by binary search).
    private var snapshots: [SnapshotKey: RawMappingSnapshot] = [:]
    private var keys: Set<RawLocation.Key> = []
    /// JIT code is named when it is seen: its perf map may be gone, or the
    /// memory reused, by the end.
    private var early: [RawLocation.Key: RawLocation] = [:]
    private let shared: Symbolizer?
    private lazy var symbolizer = shared ?? makeSymbolizer()
    /// Stacks already noted: a repeated stack costs one hash of its
    /// addresses, not a set insertion a frame. Bounded; past the limit every
    /// frame is noted again (the set of keys is what counts).
    private struct SeenStack: Hashable { var pid: Int32; var generation: UInt64; var kernelCount: Int; var addresses: [UInt64] }
    private var seen: Set<SeenStack> = []
    private let seenLimit = 200_000

    /// The symbolizer for JIT code named as it is seen (in ``note``), when
    /// ``locations()`` runs on another thread than ``note`` with a shared one.
    private let earlySymbolizer: Symbolizer?

    /// - Parameters:
    ///   - symbolizer: one to share across recordings (`sprof agent`'s
    ///     windows, named one at a time on one thread), whose owner reports
    ///     the files that gave no names; nil makes its own at the first name
    ///     needed and reports them.
    ///   - early: the one ``note`` uses for JIT code, when `symbolizer` is in
    ///     use on another thread meanwhile.
    init(symbolizer: Symbolizer? = nil, early: Symbolizer? = nil) {
        shared = symbolizer
        earlySymbolizer = early
    }

    func note(_ sample: RawSample, generation: UInt64, mappings: [Mapping], userFrames: UnsafeBufferPointer<UInt64>) {
        let pid = sample.tgid
        var addresses: [UInt64] = []
        addresses.reserveCapacity(sample.kernelFrameCount + userFrames.count)
        for i in 0..<sample.kernelFrameCount { addresses.append(sample.kernelFrame(i).rawValue) }
        addresses.append(contentsOf: userFrames)
        let stack = SeenStack(pid: pid, generation: generation, kernelCount: sample.kernelFrameCount, addresses: addresses)
        if seen.contains(stack) { return }
        if seen.count < seenLimit { seen.insert(stack) }
        if !userFrames.isEmpty {
            let s = SnapshotKey(pid: pid, generation: generation)
            if snapshots[s] == nil { snapshots[s] = RawMappingSnapshot(pid: pid, generation: generation, mappings: mappings) }
            for i in 0..<userFrames.count {
                let key = RawLocation.Key(pid: pid, generation: generation, address: userFrames[i],
                                          isReturnAddress: i > 0, isKernel: false)
                guard keys.insert(key).inserted else { continue }
                let a = ProcessAddress(key.address)
                if let m = snapshots[s]!.mapping(containing: a), !m.isFile, m.isExecutable, m.path != "[vdso]" {
                    early[key] = RawLocation(key: key, (earlySymbolizer ?? symbolizer).symbolize(a, isReturnAddress: i > 0, pid: pid, mapping: m))
                }
            }
        }
        for i in 0..<sample.kernelFrameCount {
            keys.insert(RawLocation.Key(pid: 0, generation: 0, address: sample.kernelFrame(i).rawValue,
                                        isReturnAddress: i > 0, isKernel: true))
        }
    }

    func locations() -> [RawLocation] {
        var out: [RawLocation] = []
        out.reserveCapacity(keys.count)
        // Sorted, so the file's order does not depend on hashing.
        for key in keys.sorted(by: { ($0.pid, $0.generation, $0.address) < ($1.pid, $1.generation, $1.address) }) {
            if let named = early[key], named.kind == SymbolizedLocation.Kind.jit.rawValue {
                out.append(named)
            } else if key.isKernel {
                out.append(RawLocation(key: key, symbolizer.symbolize(kernel: KernelAddress(key.address), isReturnAddress: key.isReturnAddress)))
            } else {
                let snapshot = snapshots[SnapshotKey(pid: key.pid, generation: key.generation)]
                let a = ProcessAddress(key.address)
                out.append(RawLocation(key: key, symbolizer.symbolize(a, isReturnAddress: key.isReturnAddress, pid: key.pid,
                                                                      mapping: snapshot?.mapping(containing: a), live: true)))
            }
        }
        if shared == nil { reportUnavailable(symbolizer.unavailable) }
        return out
    }
}

/// Says on stderr which files gave no names, once each (the frames they
/// hold are `module+0xOFFSET`).
func reportUnavailable(_ problems: [String]) {
    for p in problems.prefix(10) { FileHandleStderr.write("sprof: no symbols from \(p)\n") }
    if problems.count > 10 { FileHandleStderr.write("sprof: ... and \(problems.count - 10) more files without symbols\n") }
}

/// Names frames for reports: from the recording's own locations records
/// when it has them (format 1.2), else by symbolizing now from the recorded
/// paths (a raw recording, or an older file), checked by build-id.
final class FrameNames {
    private let recorded: [RawLocation.Key: RawLocation]
    /// Made at the first address the recording did not name.
    private var symbolizer: Symbolizer?
    private var named: [RawLocation.Key: RawLocation] = [:]
    /// Show mangled names (`--no-demangle`).
    let mangled: Bool

    /// Files that gave no names while reporting (none when the recording named everything).
    var unavailable: [String] { symbolizer?.unavailable ?? [] }

    init(recorded: [RawLocation.Key: RawLocation], mangled: Bool) {
        self.recorded = recorded
        self.mangled = mangled
    }

    private func live() -> Symbolizer {
        if let symbolizer { return symbolizer }
        let made = makeSymbolizer()
        symbolizer = made
        return made
    }

    /// A user address of process `pid`, seen with the mappings of `snapshot`.
    func user(_ address: UInt64, isReturnAddress: Bool, pid: Int32, snapshot: RawMappingSnapshot?) -> RawLocation {
        let key = RawLocation.Key(pid: pid, generation: snapshot?.generation ?? 0, address: address,
                                  isReturnAddress: isReturnAddress, isKernel: false)
        if let l = recorded[key] ?? named[key] { return l }
        let a = ProcessAddress(address)
        let l = RawLocation(key: key, live().symbolize(a, isReturnAddress: isReturnAddress, pid: pid,
                                                       mapping: snapshot?.mapping(containing: a), live: false))
        named[key] = l
        return l
    }

    func kernel(_ address: KernelAddress, isReturnAddress: Bool) -> RawLocation {
        let key = RawLocation.Key(pid: 0, generation: 0, address: address.rawValue, isReturnAddress: isReturnAddress, isKernel: true)
        if let l = recorded[key] ?? named[key] { return l }
        let l = RawLocation(key: key, live().symbolize(kernel: address, isReturnAddress: isReturnAddress))
        named[key] = l
        return l
    }
}
