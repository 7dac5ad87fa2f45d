// Merging profiles: the agent's windows (issue 9) become one report.
//
// What pprof itself does when given several profiles (google/pprof,
// profile/merge.go, `Merge`): mappings, functions and locations are
// re-interned by content, samples with the same stack and labels are summed.
// Two differences, both because store windows are slices of one timeline:
// pprof refuses profiles whose sample types differ, where a window recorded
// without off-CPU simply has no off-CPU values (0); and pprof sums the
// durations, where the merged duration here runs from the earliest start to
// the latest end (the same for back-to-back windows, right for overlapping
// ones or gaps).

extension Profile {
    /// One profile with every sample of `profiles`:
    ///
    /// - sample types: the union, by type, in order of first appearance;
    ///   the same type in two units is ``ProfileError/incompatible(_:)``;
    /// - mappings, functions and locations re-interned: each distinct one
    ///   (by content, not id) once, ids renumbered densely from 1 as
    ///   profile.proto requires (`id` "must be nonzero", our model indexes
    ///   by id − 1);
    /// - samples: for each (stack of re-interned location ids, label set),
    ///   `value[t] = Σ value[t]` over the input samples with that stack and
    ///   those labels, where an input profile without type `t` contributes 0
    ///   (sums saturate at `Int64.max` rather than wrap);
    /// - `timeNanos = min(timeNanos_i ≠ 0)`,
    ///   `durationNanos = max(timeNanos_i + durationNanos_i) − timeNanos`;
    /// - period type: the first profile's that has one; `period = max(period_i)`
    ///   (as pprof's merge); default sample type: the first one set;
    /// - comments: each distinct one once, in order of first appearance.
    public static func merging(_ profiles: [Profile]) throws(ProfileError) -> Profile {
        var merger = ProfileMerger()
        for p in profiles { try merger.add(p) }
        return merger.profile
    }
}

/// Merges profiles one at a time (``Profile/merging(_:)`` explains the
/// rules), so that a store of thousands of windows is merged holding one
/// decoded window at a time, and a window that does not fit can be left out:
/// ``add(_:)`` checks everything before it changes anything, so after an
/// error the merger is exactly as it was.
public struct ProfileMerger {
    public private(set) var profile = Profile()
    /// Profiles added.
    public private(set) var count = 0

    private struct MappingKey: Hashable { var start, limit, offset: UInt64; var file, buildID: String }
    private struct FunctionKey: Hashable { var name, systemName, file: String; var startLine: Int64 }
    private struct LineKey: Hashable { var function: UInt64; var line: Int64 }
    private struct LocationKey: Hashable { var mapping, address: UInt64; var lines: [LineKey] }
    private struct SampleKey: Hashable { var locations: [UInt64]; var labels: [Profile.Label] }

    private var mappingIDs: [MappingKey: UInt64] = [:]
    private var functionIDs: [FunctionKey: UInt64] = [:]
    private var locationIDs: [LocationKey: UInt64] = [:]
    private var sampleIndex: [SampleKey: Int] = [:]
    private var comments: Set<String> = []
    private var end: Int64 = 0

    public init() {}

    /// Adds every sample of `p`. Throws, changing nothing, when `p` has a
    /// sample type in another unit than before, or refers to a mapping,
    /// function or location it does not have.
    public mutating func add(_ p: Profile) throws(ProfileError) {
        // 1. Check: value positions, then references.
        var valueSlot: [Int] = []   // p's value index -> merged value index
        var newTypes: [Profile.ValueType] = []
        for t in p.sampleTypes {
            if let i = profile.sampleTypes.firstIndex(where: { $0.type == t.type }) {
                guard profile.sampleTypes[i].unit == t.unit else {
                    throw .incompatible("sample type \(t.type) is in \(t.unit) in one profile and in \(profile.sampleTypes[i].unit) in another")
                }
                valueSlot.append(i)
            } else if newTypes.contains(where: { $0.type == t.type }) {
                throw .incompatible("sample type \(t.type) appears twice in one profile")
            } else {
                valueSlot.append(profile.sampleTypes.count + newTypes.count)
                newTypes.append(t)
            }
        }
        if Set(valueSlot).count != valueSlot.count {
            throw .incompatible("a sample type appears twice in one profile: \(p.sampleTypes.map(\.type).joined(separator: ", "))")
        }
        for l in p.locations {
            if l.mappingID != 0, p.mapping(l.mappingID) == nil {
                throw .inconsistent(path: "a merged profile", reason: "location \(l.id) refers to mapping \(l.mappingID), which is not there")
            }
            for line in l.lines where p.function(line.functionID) == nil {
                throw .inconsistent(path: "a merged profile", reason: "location \(l.id) refers to function \(line.functionID), which is not there")
            }
        }
        for s in p.samples {
            guard s.values.count == p.sampleTypes.count else {
                throw .inconsistent(path: "a merged profile", reason: "a sample has \(s.values.count) values for \(p.sampleTypes.count) sample types")
            }
            for id in s.locationIDs where p.location(id) == nil {
                throw .inconsistent(path: "a merged profile", reason: "a sample refers to location \(id), which is not there")
            }
        }

        // 2. Merge. New sample types: earlier samples had none of them (0).
        if !newTypes.isEmpty {
            profile.sampleTypes += newTypes
            for i in profile.samples.indices {
                profile.samples[i].values += repeatElement(0, count: newTypes.count)
            }
        }
        var mappings: [UInt64] = [0]   // p's id -> merged id; index 0: no mapping
        mappings.reserveCapacity(p.mappings.count + 1)
        for m in p.mappings {
            let key = MappingKey(start: m.start, limit: m.limit, offset: m.fileOffset, file: m.file, buildID: m.buildID)
            let id: UInt64
            if let known = mappingIDs[key] {
                id = known
                let i = Int(id - 1)
                profile.mappings[i].hasFunctions = profile.mappings[i].hasFunctions || m.hasFunctions
                profile.mappings[i].hasFilenames = profile.mappings[i].hasFilenames || m.hasFilenames
                profile.mappings[i].hasLineNumbers = profile.mappings[i].hasLineNumbers || m.hasLineNumbers
                profile.mappings[i].hasInlineFrames = profile.mappings[i].hasInlineFrames || m.hasInlineFrames
            } else {
                id = UInt64(profile.mappings.count + 1)
                var copy = m
                copy.id = id
                profile.mappings.append(copy)
                mappingIDs[key] = id
            }
            mappings.append(id)
        }
        var functions: [UInt64] = [0]
        functions.reserveCapacity(p.functions.count + 1)
        for f in p.functions {
            let key = FunctionKey(name: f.name, systemName: f.systemName, file: f.file, startLine: f.startLine)
            if let known = functionIDs[key] { functions.append(known); continue }
            let id = UInt64(profile.functions.count + 1)
            var copy = f
            copy.id = id
            profile.functions.append(copy)
            functionIDs[key] = id
            functions.append(id)
        }
        var locations: [UInt64] = [0]
        locations.reserveCapacity(p.locations.count + 1)
        for l in p.locations {
            let lines = l.lines.map { LineKey(function: functions[Int($0.functionID)], line: $0.line) }
            let key = LocationKey(mapping: mappings[Int(l.mappingID)], address: l.address, lines: lines)
            if let known = locationIDs[key] { locations.append(known); continue }
            let id = UInt64(profile.locations.count + 1)
            profile.locations.append(.init(id: id, mappingID: key.mapping, address: l.address,
                                           lines: lines.map { .init(functionID: $0.function, line: $0.line) }))
            locationIDs[key] = id
            locations.append(id)
        }
        let width = profile.sampleTypes.count
        for s in p.samples {
            let ids = s.locationIDs.map { locations[Int($0)] }
            // The label set, not its order, identifies a sample.
            let key = SampleKey(locations: ids, labels: s.labels.sorted(by: Self.labelOrder))
            if let i = sampleIndex[key] {
                for (k, v) in s.values.enumerated() {
                    profile.samples[i].values[valueSlot[k]] = Self.saturatingAdd(profile.samples[i].values[valueSlot[k]], v)
                }
            } else {
                var values = [Int64](repeating: 0, count: width)
                for (k, v) in s.values.enumerated() { values[valueSlot[k]] = v }
                sampleIndex[key] = profile.samples.count
                profile.samples.append(.init(locationIDs: ids, values: values, labels: s.labels))
            }
        }

        // 3. Header.
        if p.timeNanos != 0 {
            let pEnd = Self.saturatingAdd(p.timeNanos, max(p.durationNanos, 0))
            if profile.timeNanos == 0 || p.timeNanos < profile.timeNanos { profile.timeNanos = p.timeNanos }
            end = max(end, pEnd)
            // Saturating: times come from files; a start near Int64.min and an end near max must not trap.
            let (duration, overflow) = end.subtractingReportingOverflow(profile.timeNanos)
            profile.durationNanos = overflow ? .max : duration
        }
        if profile.periodType == nil { profile.periodType = p.periodType }
        profile.period = max(profile.period, p.period)
        if profile.defaultSampleType.isEmpty { profile.defaultSampleType = p.defaultSampleType }
        for c in p.comments where comments.insert(c).inserted { profile.comments.append(c) }
        count += 1
    }

    private static func labelOrder(_ a: Profile.Label, _ b: Profile.Label) -> Bool {
        if a.key != b.key { return a.key < b.key }
        if a.string != b.string { return (a.string ?? "") < (b.string ?? "") }
        return (a.number ?? .min) < (b.number ?? .min)
    }

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}
