import Foundation
import SwiftProtobuf

/// pprof files: a ``Profile`` encoded as profile.proto's `Profile` message,
/// gzip-compressed (what `go tool pprof`, Parca, Pyroscope and Grafana read).
public enum Pprof {
    /// The gzip-compressed encoding of `profile`.
    public static func encode(_ profile: Profile) throws(ProfileError) -> [UInt8] {
        try Gzip.compress(try encodeUncompressed(profile))
    }

    /// The protobuf encoding of `profile`, not compressed (also valid pprof).
    static func encodeUncompressed(_ profile: Profile) throws(ProfileError) -> [UInt8] {
        var strings = StringTable()
        var m = Perftools_Profiles_Profile()
        m.sampleType = profile.sampleTypes.map { strings.valueType($0) }
        m.sample = profile.samples.map { s in
            var out = Perftools_Profiles_Sample()
            out.locationID = s.locationIDs
            out.value = s.values
            out.label = s.labels.map { l in
                var label = Perftools_Profiles_Label()
                label.key = strings[l.key]
                if let str = l.string { label.str = strings[str] }
                if let n = l.number { label.num = n }
                return label
            }
            return out
        }
        m.mapping = profile.mappings.map { x in
            var out = Perftools_Profiles_Mapping()
            out.id = x.id
            out.memoryStart = x.start
            out.memoryLimit = x.limit
            out.fileOffset = x.fileOffset
            out.filename = strings[x.file]
            out.buildID = strings[x.buildID]
            out.hasFunctions_p = x.hasFunctions
            out.hasFilenames_p = x.hasFilenames
            out.hasLineNumbers_p = x.hasLineNumbers
            out.hasInlineFrames_p = x.hasInlineFrames
            return out
        }
        m.location = profile.locations.map { x in
            var out = Perftools_Profiles_Location()
            out.id = x.id
            out.mappingID = x.mappingID
            out.address = x.address
            out.line = x.lines.map { l in
                var line = Perftools_Profiles_Line()
                line.functionID = l.functionID
                line.line = l.line
                return line
            }
            return out
        }
        m.function = profile.functions.map { f in
            var out = Perftools_Profiles_Function()
            out.id = f.id
            out.name = strings[f.name]
            out.systemName = strings[f.systemName]
            out.filename = strings[f.file]
            out.startLine = f.startLine
            return out
        }
        m.timeNanos = profile.timeNanos
        m.durationNanos = profile.durationNanos
        if let p = profile.periodType { m.periodType = strings.valueType(p) }
        m.period = profile.period
        m.comment = profile.comments.map { strings[$0] }
        if !profile.defaultSampleType.isEmpty { m.defaultSampleType = strings[profile.defaultSampleType] }
        m.stringTable = strings.strings
        let bytes: [UInt8]
        do { bytes = try m.serializedBytes() } catch { throw .compression("protobuf encoding failed: \(error)") }
        return bytes
    }

    /// Decodes a pprof file's bytes: gzip-compressed or not (both are
    /// valid pprof). Every reference is checked, so a damaged file is an
    /// error naming what is wrong, never a crash. A gzip stream may inflate
    /// to at most `inflateLimit` bytes (``Gzip/maxInflatedSize``: 1 GiB).
    public static func decode(_ bytes: [UInt8], path: String) throws(ProfileError) -> Profile {
        try decode(bytes, path: path, inflateLimit: Gzip.maxInflatedSize)
    }

    static func decode(_ bytes: [UInt8], path: String, inflateLimit: Int) throws(ProfileError) -> Profile {
        let raw = Gzip.isGzip(bytes) ? try Gzip.decompress(bytes, path: path, limit: inflateLimit) : bytes
        let m: Perftools_Profiles_Profile
        do { m = try Perftools_Profiles_Profile(serializedBytes: raw) } catch {
            throw .notPprof(path: path, reason: "\(error)")
        }
        let table = m.stringTable
        func string(_ i: Int64, _ what: String) throws(ProfileError) -> String {
            guard i >= 0, i < table.count else {
                throw .inconsistent(path: path, reason: "\(what) refers to string \(i); the table has \(table.count)")
            }
            return table[Int(i)]
        }
        guard table.first.map({ $0.isEmpty }) ?? m.sample.isEmpty else {
            throw .inconsistent(path: path, reason: "the string table does not start with \"\" (profile.proto requires it)")
        }
        var p = Profile()
        for t in m.sampleType { p.sampleTypes.append(.init(try string(t.type, "a sample type"), try string(t.unit, "a sample unit"))) }
        // Ids may be any nonzero numbers in pprof; renumber them densely from 1.
        var mappingIDs: [UInt64: UInt64] = [:]
        for x in m.mapping {
            let id = UInt64(p.mappings.count + 1)
            mappingIDs[x.id] = id
            var mapping = Profile.Mapping(id: id, start: x.memoryStart, limit: x.memoryLimit, fileOffset: x.fileOffset,
                                          file: try string(x.filename, "mapping \(x.id)'s file"),
                                          buildID: try string(x.buildID, "mapping \(x.id)'s build-id"))
            mapping.hasFunctions = x.hasFunctions_p
            mapping.hasFilenames = x.hasFilenames_p
            mapping.hasLineNumbers = x.hasLineNumbers_p
            mapping.hasInlineFrames = x.hasInlineFrames_p
            p.mappings.append(mapping)
        }
        var functionIDs: [UInt64: UInt64] = [:]
        for f in m.function {
            let id = UInt64(p.functions.count + 1)
            functionIDs[f.id] = id
            var function = Profile.Function(id: id, name: try string(f.name, "function \(f.id)'s name"),
                                            systemName: try string(f.systemName, "function \(f.id)'s system name"),
                                            file: try string(f.filename, "function \(f.id)'s file"))
            function.startLine = f.startLine
            p.functions.append(function)
        }
        var locationIDs: [UInt64: UInt64] = [:]
        for x in m.location {
            let id = UInt64(p.locations.count + 1)
            locationIDs[x.id] = id
            var mappingID: UInt64 = 0
            if x.mappingID != 0 {
                guard let mid = mappingIDs[x.mappingID] else {
                    throw .inconsistent(path: path, reason: "location \(x.id) refers to mapping \(x.mappingID), which is not there")
                }
                mappingID = mid
            }
            var lines: [Profile.Line] = []
            for l in x.line {
                guard let fid = functionIDs[l.functionID] else {
                    throw .inconsistent(path: path, reason: "location \(x.id) refers to function \(l.functionID), which is not there")
                }
                lines.append(.init(functionID: fid, line: l.line))
            }
            p.locations.append(.init(id: id, mappingID: mappingID, address: x.address, lines: lines))
        }
        for s in m.sample {
            var ids: [UInt64] = []
            ids.reserveCapacity(s.locationID.count)
            for l in s.locationID {
                guard let id = locationIDs[l] else {
                    throw .inconsistent(path: path, reason: "a sample refers to location \(l), which is not there")
                }
                ids.append(id)
            }
            guard s.value.count == p.sampleTypes.count else {
                throw .inconsistent(path: path, reason: "a sample has \(s.value.count) values for \(p.sampleTypes.count) sample types")
            }
            var labels: [Profile.Label] = []
            for l in s.label {
                let key = try string(l.key, "a label key")
                labels.append(l.str != 0 ? .init(key: key, string: try string(l.str, "label \(key)")) : .init(key: key, number: l.num))
            }
            p.samples.append(.init(locationIDs: ids, values: s.value, labels: labels))
        }
        p.timeNanos = m.timeNanos
        p.durationNanos = m.durationNanos
        if m.hasPeriodType {
            p.periodType = .init(try string(m.periodType.type, "the period type"), try string(m.periodType.unit, "the period unit"))
        }
        p.period = m.period
        p.comments = try m.comment.map { (c) throws(ProfileError) in try string(c, "a comment") }
        p.defaultSampleType = m.defaultSampleType == 0 ? "" : try string(m.defaultSampleType, "the default sample type")
        return p
    }

    /// Reads a pprof file.
    public static func read(path: String) throws(ProfileError) -> Profile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .notPprof(path: path, reason: "cannot be read (missing, or permission denied)")
        }
        return try decode([UInt8](data), path: path)
    }
}

/// profile.proto's string table: index 0 is "", each string once.
struct StringTable {
    private(set) var strings: [String] = [""]
    private var index: [String: Int64] = ["": 0]

    subscript(_ s: String) -> Int64 {
        mutating get {
            if let i = index[s] { return i }
            let i = Int64(strings.count)
            strings.append(s)
            index[s] = i
            return i
        }
    }

    mutating func valueType(_ v: Profile.ValueType) -> Perftools_Profiles_ValueType {
        var out = Perftools_Profiles_ValueType()
        out.type = self[v.type]
        out.unit = self[v.unit]
        return out
    }
}
