/// A profile as pprof models it (profile.proto): samples whose stacks are
/// lists of locations, each location one address with its functions
/// (inlined ones first), mappings and functions shared. Value types, built
/// with ``ProfileBuilder``; written and read as pprof by ``Pprof``.
///
/// Conventions sprof keeps on top of pprof's, so that folded stacks can be
/// rebuilt exactly (`_[k]`, `_[j]`, `_[i]` as stackcollapse-perf.pl marks
/// frames):
/// - a kernel location's mapping is `[kernel.kallsyms]` or `[MODULE]` and
///   starts in the upper half of the address space;
/// - a JIT location's mapping is named `[jit]`;
/// - a stack that could not be unwound to its root ends (outermost) in a
///   location without a mapping whose function is `[truncated: REASON]`;
/// - labels `pid` and `tid` (numbers), `comm` (the process's name) and
///   `thread_name` (the thread's).
public struct Profile: Sendable, Equatable {
    public struct ValueType: Sendable, Equatable {
        public var type: String
        public var unit: String
        public init(_ type: String, _ unit: String) { self.type = type; self.unit = unit }
    }

    public struct Mapping: Sendable, Equatable {
        public var id: UInt64
        public var start: UInt64
        public var limit: UInt64
        public var fileOffset: UInt64
        public var file: String
        /// Hex, "" when unknown.
        public var buildID: String
        public var hasFunctions = true
        public var hasFilenames = false
        public var hasLineNumbers = false
        public var hasInlineFrames = false
        public init(id: UInt64, start: UInt64, limit: UInt64, fileOffset: UInt64, file: String, buildID: String) {
            self.id = id; self.start = start; self.limit = limit; self.fileOffset = fileOffset; self.file = file; self.buildID = buildID
        }
        /// Kernel text (`[kernel.kallsyms]`, a module): upper-half addresses.
        public var isKernel: Bool { start >= 0xffff_8000_0000_0000 && file.hasPrefix("[") }
        public var isJIT: Bool { file == "[jit]" }
    }

    public struct Function: Sendable, Equatable {
        public var id: UInt64
        public var name: String
        public var systemName: String
        public var file: String
        public var startLine: Int64 = 0
        public init(id: UInt64, name: String, systemName: String, file: String) {
            self.id = id; self.name = name; self.systemName = systemName; self.file = file
        }
    }

    public struct Line: Sendable, Equatable {
        public var functionID: UInt64
        public var line: Int64
        public init(functionID: UInt64, line: Int64) { self.functionID = functionID; self.line = line }
    }

    public struct Location: Sendable, Equatable {
        public var id: UInt64
        /// 0: no mapping.
        public var mappingID: UInt64
        public var address: UInt64
        /// Innermost first: the last line is the function the others were inlined into.
        public var lines: [Line]
        public init(id: UInt64, mappingID: UInt64, address: UInt64, lines: [Line]) {
            self.id = id; self.mappingID = mappingID; self.address = address; self.lines = lines
        }
    }

    public struct Label: Sendable, Equatable, Hashable {
        public var key: String
        public var string: String?
        public var number: Int64?
        public init(key: String, string: String) { self.key = key; self.string = string }
        public init(key: String, number: Int64) { self.key = key; self.number = number }
    }

    public struct Sample: Sendable, Equatable {
        /// Leaf first.
        public var locationIDs: [UInt64]
        /// One per ``Profile/sampleTypes``.
        public var values: [Int64]
        public var labels: [Label]
        public init(locationIDs: [UInt64], values: [Int64], labels: [Label]) {
            self.locationIDs = locationIDs; self.values = values; self.labels = labels
        }
        public func label(_ key: String) -> Label? { labels.first { $0.key == key } }
    }

    public var sampleTypes: [ValueType] = []
    public var samples: [Sample] = []
    /// Indexed by id - 1 (ids are dense, from 1).
    public var mappings: [Mapping] = []
    public var locations: [Location] = []
    public var functions: [Function] = []
    public var timeNanos: Int64 = 0
    public var durationNanos: Int64 = 0
    public var periodType: ValueType? = nil
    public var period: Int64 = 0
    public var comments: [String] = []
    /// The type of the value shown by default ("" for the first).
    public var defaultSampleType: String = ""

    public init() {}

    public func mapping(_ id: UInt64) -> Mapping? { id >= 1 && id <= UInt64(mappings.count) ? mappings[Int(id - 1)] : nil }
    public func location(_ id: UInt64) -> Location? { id >= 1 && id <= UInt64(locations.count) ? locations[Int(id - 1)] : nil }
    public func function(_ id: UInt64) -> Function? { id >= 1 && id <= UInt64(functions.count) ? functions[Int(id - 1)] : nil }

    /// This profile with one more value per sample: the sum of the values at
    /// `indices` (e.g. CPU and off-CPU nanoseconds, shown together).
    public func addingSum(of indices: [Int], as type: ValueType) -> Profile {
        var p = self
        p.sampleTypes.append(type)
        for i in p.samples.indices {
            var sum: Int64 = 0
            for k in indices where k < p.samples[i].values.count { sum = sum.saturatingAdd(p.samples[i].values[k]) }
            p.samples[i].values.append(sum)
        }
        return p
    }

    /// The index of the value named `type` in ``sampleTypes``.
    public func valueIndex(_ type: String) -> Int? { sampleTypes.firstIndex { $0.type == type } }
}

/// Builds a ``Profile`` with shared (interned) mappings, functions and
/// locations, as pprof expects: each distinct one once, referred to by id.
public struct ProfileBuilder {
    public private(set) var profile = Profile()
    private var functionIDs: [FunctionKey: UInt64] = [:]
    private var mappingIDs: [MappingKey: UInt64] = [:]
    private var sampleIndex: [SampleKey: Int] = [:]

    struct FunctionKey: Hashable { var name: String; var systemName: String; var file: String }
    struct MappingKey: Hashable { var start: UInt64; var limit: UInt64; var offset: UInt64; var file: String; var buildID: String }
    struct SampleKey: Hashable { var locations: [UInt64]; var labels: [Profile.Label] }

    public init(sampleTypes: [Profile.ValueType]) {
        profile.sampleTypes = sampleTypes
    }

    public mutating func setPeriod(_ type: Profile.ValueType, _ period: Int64) {
        profile.periodType = type
        profile.period = period
    }

    public mutating func setTime(startNanos: Int64, durationNanos: Int64) {
        profile.timeNanos = startNanos
        profile.durationNanos = durationNanos
    }

    public mutating func addComment(_ c: String) { profile.comments.append(c) }

    public mutating func mapping(start: UInt64, limit: UInt64, fileOffset: UInt64, file: String, buildID: String) -> UInt64 {
        let key = MappingKey(start: start, limit: limit, offset: fileOffset, file: file, buildID: buildID)
        if let id = mappingIDs[key] { return id }
        let id = UInt64(profile.mappings.count + 1)
        profile.mappings.append(Profile.Mapping(id: id, start: start, limit: limit, fileOffset: fileOffset, file: file, buildID: buildID))
        mappingIDs[key] = id
        return id
    }

    /// Records what a mapping's locations have: names, files, lines, inline frames.
    public mutating func noteMappingHas(_ id: UInt64, filenames: Bool, lineNumbers: Bool, inlineFrames: Bool) {
        guard id >= 1, id <= UInt64(profile.mappings.count) else { return }
        let i = Int(id - 1)
        profile.mappings[i].hasFilenames = profile.mappings[i].hasFilenames || filenames
        profile.mappings[i].hasLineNumbers = profile.mappings[i].hasLineNumbers || lineNumbers
        profile.mappings[i].hasInlineFrames = profile.mappings[i].hasInlineFrames || inlineFrames
    }

    public mutating func function(name: String, systemName: String, file: String) -> UInt64 {
        let key = FunctionKey(name: name, systemName: systemName, file: file)
        if let id = functionIDs[key] { return id }
        let id = UInt64(profile.functions.count + 1)
        profile.functions.append(Profile.Function(id: id, name: name, systemName: systemName, file: file))
        functionIDs[key] = id
        return id
    }

    /// A new location (callers intern them by their own key: the same
    /// address can be two locations, as an innermost frame and as a return
    /// address).
    public mutating func location(mappingID: UInt64, address: UInt64, lines: [Profile.Line]) -> UInt64 {
        let id = UInt64(profile.locations.count + 1)
        profile.locations.append(Profile.Location(id: id, mappingID: mappingID, address: address, lines: lines))
        return id
    }

    /// Adds a sample; one with the same stack and labels as an earlier one
    /// is merged into it (values summed), as pprof's tools do.
    public mutating func addSample(locationIDs: [UInt64], values: [Int64], labels: [Profile.Label]) {
        let key = SampleKey(locations: locationIDs, labels: labels)
        if let i = sampleIndex[key] {
            for v in values.indices where v < profile.samples[i].values.count {
                profile.samples[i].values[v] = profile.samples[i].values[v].saturatingAdd(values[v])
            }
            return
        }
        sampleIndex[key] = profile.samples.count
        profile.samples.append(Profile.Sample(locationIDs: locationIDs, values: values, labels: labels))
    }
}

extension Int64 {
    /// `self + other`, clamped to `Int64.min ... Int64.max`: sample values
    /// come from files, and a sum of hostile ones must neither trap (Swift's
    /// `+`) nor wrap to a negative total (`&+`).
    @inline(__always) func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
