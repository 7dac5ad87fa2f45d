/// Which samples a report looks at (pprof's `-focus`, and sprof's process filters).
public struct SampleFilter {
    public var pids: Set<Int64> = []
    public var tids: Set<Int64> = []
    /// Process names (label `comm`, else `thread_name`).
    public var comms: Set<String> = []
    /// Keep samples with a frame whose name matches.
    public var focus: Regex<AnyRegexOutput>? = nil

    public init() {}

    public var isEmpty: Bool { pids.isEmpty && tids.isEmpty && comms.isEmpty && focus == nil }
}

extension Profile {
    /// How a frame is marked in folded stacks (stackcollapse-perf.pl's annotations).
    public enum FrameKind: Sendable {
        case user, kernel, jit, inlined
        /// The suffix folded stacks carry: `_[k]`, `_[j]`, `_[i]`, or none.
        public var suffix: String {
            switch self {
            case .user: return ""
            case .kernel: return "_[k]"
            case .jit: return "_[j]"
            case .inlined: return "_[i]"
            }
        }
    }

    /// The frames of a location, outermost first (the function the others
    /// were inlined into, then the inlined ones), with their kinds.
    public func frames(of location: Location, mangled: Bool = false) -> [(name: String, kind: FrameKind)] {
        let mapping = self.mapping(location.mappingID)
        let base: FrameKind = mapping?.isKernel == true ? .kernel : (mapping?.isJIT == true ? .jit : .user)
        if location.lines.isEmpty {
            // No function: name it by its mapping and offset, as symbolizers do.
            let module = mapping.map { $0.file.split(separator: "/").last.map(String.init) ?? $0.file } ?? "[unknown]"
            let offset = mapping.map { location.address &- $0.start &+ $0.fileOffset } ?? location.address
            return [("\(module)+0x\(String(offset, radix: 16))", base)]
        }
        var out: [(String, FrameKind)] = []
        out.reserveCapacity(location.lines.count)
        for (i, line) in location.lines.enumerated().reversed() {
            let f = function(line.functionID)
            let name = (mangled ? f?.systemName : f?.name).flatMap { $0.isEmpty ? nil : $0 } ?? f?.name ?? "?"
            out.append((name, i == location.lines.count - 1 ? base : (base == .user ? .inlined : base)))
        }
        return out
    }

    /// The process name of a sample: label `comm`, else `thread_name`, else "?".
    public func processName(of sample: Sample) -> String {
        sample.label("comm")?.string ?? sample.label("thread_name")?.string ?? "?"
    }

    /// Whether `sample` passes `filter`.
    public func matches(_ sample: Sample, _ filter: SampleFilter) -> Bool {
        if !filter.pids.isEmpty, !(sample.label("pid")?.number.map(filter.pids.contains) ?? false) { return false }
        if !filter.tids.isEmpty, !(sample.label("tid")?.number.map(filter.tids.contains) ?? false) { return false }
        if !filter.comms.isEmpty {
            let names = [sample.label("comm")?.string, sample.label("thread_name")?.string].compactMap { $0 }
            if !names.contains(where: filter.comms.contains) { return false }
        }
        if let focus = filter.focus {
            var hit = false
            outer: for id in sample.locationIDs {
                guard let l = location(id) else { continue }
                for line in l.lines {
                    if let f = function(line.functionID), f.name.contains(focus) || f.systemName.contains(focus) { hit = true; break outer }
                }
            }
            if !hit { return false }
        }
        return true
    }

    /// Folded stacks (Brendan Gregg's format): per sample, the process name
    /// first, then frames root → leaf, marked `_[k]` kernel, `_[j]` JIT,
    /// `_[i]` inlined; merged, with the sum of value `valueIndex`. A `;` in a
    /// name (the separator) becomes `:`.
    public func foldedStacks(valueIndex: Int = 0, mangled: Bool = false, filter: SampleFilter = SampleFilter()) -> [[String]: Int64] {
        var out: [[String]: Int64] = [:]
        var cache: [UInt64: [String]] = [:]
        var stack: [String] = []
        for s in samples where filter.isEmpty || matches(s, filter) {
            guard valueIndex < s.values.count else { continue }
            stack.removeAll(keepingCapacity: true)
            stack.append(Self.clean(processName(of: s)))
            for id in s.locationIDs.reversed() {
                if let names = cache[id] {
                    stack.append(contentsOf: names)
                    continue
                }
                guard let l = location(id) else { continue }
                let names = frames(of: l, mangled: mangled).map { Self.clean($0.name) + $0.kind.suffix }
                cache[id] = names
                stack.append(contentsOf: names)
            }
            out[stack] = (out[stack] ?? 0).saturatingAdd(s.values[valueIndex])
        }
        return out
    }

    /// A name as one field of a line of text: `;` (the folded format's
    /// separator) becomes `:`, and control characters become U+FFFD, so a
    /// name from a hostile binary, perf map or profile cannot start a line
    /// of its own in folded output nor send escape sequences to a terminal
    /// (a symbol name is any bytes but NUL: ELF gABI, "String Table").
    public static func clean(_ name: String) -> String {
        guard name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: ";") }) else { return name }
        var out = String.UnicodeScalarView()
        for c in name.unicodeScalars {
            switch c.value {
            case 0x3B: out.append(":")
            case 0..<0x20, 0x7F: out.append("\u{FFFD}")
            default: out.append(c)
            }
        }
        return String(out)
    }

    /// Folded text, lines sorted, so the output is deterministic.
    public static func renderFolded(_ stacks: [[String]: Int64]) -> String {
        stacks.map { ($0.key.joined(separator: ";"), $0.value) }
            .sorted { $0.0 < $1.0 }
            .map { "\($0.0) \($0.1)\n" }
            .joined()
    }

    /// A profile from folded stacks (the inverse of ``foldedStacks(valueIndex:mangled:filter:)``):
    /// the first frame is the process name (label `comm`), `_[k]` frames go
    /// to a `[kernel.kallsyms]` mapping, `_[j]` to `[jit]`, and `_[i]`
    /// frames join the location of the frame before them (their caller) as
    /// inlined lines. Addresses are made up (one per distinct frame), so the
    /// result is for display, not for symbolization.
    public init(folded: [([String], Int64)], sampleType: ValueType = .init("samples", "count")) {
        var b = ProfileBuilder(sampleTypes: [sampleType])
        let kernel = b.mapping(start: 0xffff_8000_0000_0000, limit: .max, fileOffset: 0, file: "[kernel.kallsyms]", buildID: "")
        let jit = b.mapping(start: 0x1000, limit: 0x7fff_ffff_ffff, fileOffset: 0, file: "[jit]", buildID: "")
        struct Key: Hashable { var names: [String]; var mapping: UInt64 }
        var locations: [Key: UInt64] = [:]
        var nextAddress: UInt64 = 0x1000
        for (frames, count) in folded {
            guard let comm = frames.first else { continue }
            // Group root → leaf frames into locations: a frame and the inlined frames after it.
            var groups: [(names: [String], mapping: UInt64)] = []
            for frame in frames.dropFirst() {
                if frame.hasSuffix("_[i]"), !groups.isEmpty {
                    groups[groups.count - 1].names.append(String(frame.dropLast(4)))
                } else if frame.hasSuffix("_[k]") {
                    groups.append(([String(frame.dropLast(4))], kernel))
                } else if frame.hasSuffix("_[j]") {
                    groups.append(([String(frame.dropLast(4))], jit))
                } else {
                    groups.append(([frame.hasSuffix("_[i]") ? String(frame.dropLast(4)) : frame], 0))
                }
            }
            var ids: [UInt64] = []
            for g in groups.reversed() {
                let key = Key(names: g.names, mapping: g.mapping)
                if let id = locations[key] { ids.append(id); continue }
                // Lines innermost first: the last name of the group is the innermost.
                let lines = g.names.reversed().map { Line(functionID: b.function(name: $0, systemName: $0, file: ""), line: 0) }
                let address = g.mapping == kernel ? 0xffff_8000_0000_0000 + nextAddress : nextAddress
                nextAddress += 1
                let id = b.location(mappingID: g.mapping, address: address, lines: lines)
                locations[key] = id
                ids.append(id)
            }
            b.addSample(locationIDs: ids, values: [count], labels: [Label(key: "comm", string: comm)])
        }
        self = b.profile
    }
}
