import SprofBase

/// `sprof dump FILE`: a raw recording as text, for humans checking what was
/// captured. A header block (metadata, stats, losses, warnings), then one
/// aligned line per sample; `verbose` adds the kernel frames and the first
/// words of the user stack under each — or, for a sample unwound at record
/// time, its user frames and the mapping each falls in.
///
/// Output is deterministic (UTC times, sorted keys) so it can be compared
/// against a golden string in tests.
public enum RawDump {
    public struct Options: Sendable {
        /// At most this many samples (nil: all).
        public var limit: Int?
        /// Only samples of this tgid.
        public var pid: Int32?
        /// Kernel frames in hex and the first ``stackWords`` words of the user
        /// stack (unwound samples: every user frame, with its mapping).
        public var verbose: Bool
        public init(limit: Int? = nil, pid: Int32? = nil, verbose: Bool = false) {
            self.limit = limit; self.pid = pid; self.verbose = verbose
        }
    }

    /// Words of user stack shown per sample in verbose mode: enough to see a
    /// return address or two near `sp`, few enough to stay readable.
    public static let stackWords = 8

    public static func render(_ reader: RawFileReader, options: Options = Options()) -> String {
        var s = ""
        write(reader, options: options, to: &s)
        return s
    }

    public static func write<Target: TextOutputStream>(_ reader: RawFileReader, options: Options = Options(),
                                                       to out: inout Target) {
        writeHeader(reader, options: options, to: &out)
        writeSamples(reader, options: options, to: &out)
    }

    // MARK: Header

    static let labelWidth = 18

    static func writeHeader<Target: TextOutputStream>(_ r: RawFileReader, options: Options, to out: inout Target) {
        let m = r.metadata
        func line(_ label: String, _ value: String) {
            out.write(pad(label, labelWidth) + value + "\n")
        }
        let writer = r.writerVersion.isEmpty ? "" : ", written by sprof \(r.writerVersion)"
        line("file", "\(r.path) (\(r.fileSize) bytes, raw format \(r.formatVersion)\(writer))")
        line("host", "\(m.hostname), Linux \(m.kernelRelease)")
        line("started", utcTimestamp(m.wallClockStartNanoseconds) + " (monotonic \(m.monotonicStartNanoseconds) ns)")
        line("sampling", "\(m.frequency) Hz, \(m.userStackSize) user-stack bytes requested")
        line("target", m.target)
        line("bpf variants", m.variants.isEmpty ? "-" : m.variants.joined(separator: ", "))
        if !m.extra.isEmpty {
            line("extra", m.extra.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        }
        if let st = r.stats {
            line("duration", milliseconds(Int64(clamping: st.durationNanoseconds)) + " ms")
            line("ended", st.endReason)
            let held = UInt64(r.sampleCount)
            line("samples", "\(r.sampleCount) in the file" + unwoundNote(r)
                 + (st.samplesWritten == held ? "" : " (stats record says \(st.samplesWritten))"))
            if st.samplesLost == 0 {
                line("lost", "0")
            } else {
                let total = st.samplesLost &+ st.samplesWritten
                line("lost", "!! \(st.samplesLost) samples lost (\(percent(st.samplesLost, of: total)) of \(total)): "
                     + "the kernel buffer or the queue was full; the profile under-counts those moments")
            }
            if !st.counters.isEmpty {
                line("counters", st.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
        } else {
            line("duration", "unknown (no stats record)")
            line("samples", "\(r.sampleCount) in the file" + unwoundNote(r))
            line("lost", "unknown (no stats record)")
        }
        // Processes: the last record for each pid, in order of first appearance.
        line("processes", "\(r.processes.count)")
        for p in r.processes {
            let pid = p.pid
            var text = "  " + pad(String(pid), 8, right: true) + "  " + pad(p.command, 16)
                + " " + (p.executablePath.isEmpty ? "-" : p.executablePath)
                + "  \(r.sampleCounts[pid] ?? 0) samples"
            if let t = p.exitTimeNanoseconds {
                text += ", exited at " + milliseconds(relative(t, m)) + " ms"
            } else if p.exited {
                text += ", exited"
            }
            out.write(text + "\n")
        }
        line("mapping snapshots", "\(r.snapshots.count)")
        if options.verbose {
            for s in r.snapshots {
                out.write("  pid " + pad(String(s.pid), 8, right: true) + "  generation \(s.generation), \(s.mappings.count) mappings\n")
            }
        }
        for w in r.warnings { line("warning", w) }
    }

    /// ", N unwound at record time" when the file holds unwound samples.
    static func unwoundNote(_ r: RawFileReader) -> String {
        r.unwoundSampleCount == 0 ? "" : ", \(r.unwoundSampleCount) unwound at record time"
    }

    // MARK: Samples

    static func writeSamples<Target: TextOutputStream>(_ r: RawFileReader, options: Options, to out: inout Target) {
        let limit = max(0, options.limit ?? Int.max)
        // First pass: the widest flags and ustack texts among the lines
        // shown ("frames 12 (truncated, stop 4)" is wider than "80/32768"),
        // so the columns after them line up. Cheap next to formatting.
        var flagsWidth = 5
        var ustackWidth = 11
        var cursor = r.makeSampleCursor(pid: options.pid)
        var n = 0
        while n < limit, let (s, _) = cursor.next() {
            flagsWidth = max(flagsWidth, flagWords(s.flags).count)
            ustackWidth = max(ustackWidth, userStackColumn(s).count)
            n += 1
        }

        out.write("\n")
        out.write(pad("time ms", 12, right: true) + " " + pad("pid", 7, right: true) + " " + pad("tid", 7, right: true)
                  + "  " + pad("comm", 16) + " " + pad("cpu", 3, right: true) + "  " + pad("kind", 7)
                  + "  " + pad("ip", 18) + "  " + pad("sp", 18) + "  " + pad("ustack", ustackWidth, right: true)
                  + " " + pad("kfr", 3, right: true) + "  " + pad("flags", flagsWidth) + "  mapping\n")

        cursor = r.makeSampleCursor(pid: options.pid)
        n = 0
        while n < limit, let (s, snapshot) = cursor.next() {
            n += 1
            let regs = s.flags.contains(.userRegisters)
            let mapping = regs ? mappingText(s.ip, snapshot) : "-"
            var row = pad(milliseconds(relative(s.timeNanoseconds, r.metadata)), 12, right: true)
            row += " " + pad(String(s.tgid), 7, right: true) + " " + pad(String(s.tid), 7, right: true)
            row += "  " + pad(s.comm.description, 16) + " " + pad(String(s.cpu), 3, right: true)
            row += "  " + pad(s.kind == .cpu ? "cpu" : "off-cpu", 7)
            row += "  " + (regs ? hex16(s.ip.rawValue) : pad("-", 18)) + "  " + (regs ? hex16(s.sp.rawValue) : pad("-", 18))
            row += "  " + pad(userStackColumn(s), ustackWidth, right: true)
            row += " " + pad(String(s.kernelFrameCount), 3, right: true)
            row += "  " + pad(flagWords(s.flags), flagsWidth) + "  " + mapping
            out.write(row + "\n")
            if options.verbose { writeDetails(s, snapshot, to: &out) }
        }
        let total = options.pid.map { r.sampleCounts[$0] ?? 0 } ?? r.sampleCount
        if n < total {
            out.write("... \(total - n) more sample\(total - n == 1 ? "" : "s") not shown\n")
        }
    }

    /// The ustack column: "copied/requested" bytes, or for an unwound
    /// sample "frames N (complete)" / "frames N (truncated, stop S)".
    static func userStackColumn(_ s: RawSample) -> String {
        guard let frames = s.userFrameCount else { return "\(s.userStackCount)/\(s.userStackRequested)" }
        return "frames \(frames) (" + (s.unwindStop == 0 ? "complete" : "truncated, stop \(s.unwindStop)") + ")"
    }

    /// Where `address` falls: "path +0xoffset" (file offset), "[anon] +0x…",
    /// "[unknown]" outside every mapping, "[no snapshot]".
    /// `returnAddress`: the mapping is looked up for `address - 1`, the call
    /// instruction, since a call that never returns can end a mapping.
    static func mappingText(_ address: ProcessAddress, _ snapshot: RawMappingSnapshot?,
                            returnAddress: Bool = false) -> String {
        guard let snapshot else { return "[no snapshot]" }
        let lookup = returnAddress && address.rawValue > 0 ? ProcessAddress(address.rawValue - 1) : address
        guard let map = snapshot.mapping(containing: lookup) else { return "[unknown]" }
        let offset = FileOffset(map.fileOffset.rawValue &+ (address.rawValue &- map.start.rawValue))
        return (map.path.isEmpty ? "[anon]" : map.path) + " " + offset.description
    }

    static func writeDetails<Target: TextOutputStream>(_ s: RawSample, _ snapshot: RawMappingSnapshot?,
                                                       to out: inout Target) {
        let indent = String(repeating: " ", count: 4)
        let cont = indent + String(repeating: " ", count: 10)
        if s.kernelFrameCount > 0 {
            for start in stride(from: 0, to: s.kernelFrameCount, by: 4) {
                let words = (start..<min(start + 4, s.kernelFrameCount)).map { hex16(s.kernelFrame($0).rawValue) }
                out.write((start == 0 ? indent + pad("kernel", 10) : cont) + words.joined(separator: " ") + "\n")
            }
        }
        if let frames = s.userFrameCount {
            for i in 0..<frames {
                let a = s.userFrame(i)
                out.write((i == 0 ? indent + pad("user", 10) : cont) + pad("#\(i)", 5) + hex16(a.rawValue)
                          + "  " + mappingText(a, snapshot, returnAddress: i > 0) + "\n")
            }
        }
        let words = min(stackWords, s.userStackCount / 8)
        if words > 0 {
            let base = s.kernelFrameCount * 8
            s.stackBytes.withUnsafeBytes { b in
                for start in stride(from: 0, to: words, by: 4) {
                    let row = (start..<min(start + 4, words)).map { hex16(b.u64(base + $0 * 8)) }
                    out.write((start == 0 ? indent + pad("ustack", 10) : cont)
                              + "sp+" + pad(String(start * 8, radix: 16), 2, right: true, fill: "0") + " "
                              + row.joined(separator: " ") + "\n")
                }
            }
        }
        var regs = "bp " + hex16(s.bp.rawValue) + ", stack end " + (s.stackEnd.map { hex16($0.rawValue) } ?? "unknown")
        if s.kind == .offCPU { regs += ", off CPU \(s.weight) ns" }
        if s.isUnwound { regs += ", unwound from \(s.capturedUserStackCount) user-stack bytes" }
        out.write(indent + pad("regs", 10) + regs + "\n")
    }

    // MARK: Formatting

    /// Flags as words, in bit order; bits without a name in hex.
    public static func flagWords(_ f: SampleFlags) -> String {
        let names: [(SampleFlags, String)] = [
            (.kernelMode, "kernel"), (.userRegisters, "user-regs"), (.userStackFault, "ustack-fault"),
            (.userStackToEnd, "ustack-to-end"), (.kernelStackError, "kstack-err"), (.viaFindVMA, "find-vma"),
            (.viaSavedRegisters, "saved-regs"), (.viaTaskPtRegs, "task-pt-regs"),
            (.offCPURunnable, "runnable"), (.offCPUUninterruptible, "uninterruptible"),
            (.userStackDeferred, "ustack-deferred"), (.userStackMissed, "ustack-missed"), (.offCPUOngoing, "ongoing"),
        ]
        var words: [String] = []
        var rest = f
        for (flag, name) in names where f.contains(flag) { words.append(name); rest.remove(flag) }
        if !rest.isEmpty { words.append("0x" + String(rest.rawValue, radix: 16)) }
        return words.isEmpty ? "-" : words.joined(separator: ",")
    }

    /// Nanoseconds since the recording's monotonic start, signed (a sample
    /// can predate the start by a little: the BPF program runs before the
    /// start time is taken).
    static func relative(_ t: UInt64, _ m: RawMetadata) -> Int64 {
        Int64(bitPattern: t &- m.monotonicStartNanoseconds)
    }

    /// "1234.567" (ms, three decimals, truncated), "-0.012".
    static func milliseconds(_ ns: Int64) -> String {
        let negative = ns < 0
        let mag = ns.magnitude / 1000 // µs
        let frac = String(mag % 1000)
        return (negative ? "-" : "") + String(mag / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
    }

    static func percent(_ part: UInt64, of whole: UInt64) -> String {
        guard whole > 0 else { return "0%" }
        guard part <= whole else { return ">100%" }
        // part * 10000 / whole in 128 bits: no overflow, quotient ≤ 10000.
        let hundredths = whole.dividingFullWidth(part.multipliedFullWidth(by: 10000)).quotient
        let frac = String(hundredths % 100)
        return "\(hundredths / 100)." + (frac.count < 2 ? "0" : "") + frac + "%"
    }

    /// "0x" and 16 hex digits: every address the same width.
    static func hex16(_ v: UInt64) -> String {
        "0x" + pad(String(v, radix: 16), 16, right: true, fill: "0")
    }

    /// Pads to `width` characters (not bytes: a comm can be non-ASCII).
    static func pad(_ s: String, _ width: Int, right: Bool = false, fill: Character = " ") -> String {
        let n = s.count
        guard n < width else { return s }
        let f = String(repeating: fill, count: width - n)
        return right ? f + s : s + f
    }

    /// "2024-05-01 12:00:00.123 UTC", from the civil-from-days algorithm
    /// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"), so the
    /// text does not depend on the local time zone.
    static func utcTimestamp(_ ns: UInt64) -> String {
        let seconds = Int64(ns / 1_000_000_000)
        let millis = Int(ns / 1_000_000 % 1000)
        let days = seconds / 86400
        let secs = Int(seconds % 86400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let mo = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (mo <= 2 ? 1 : 0)
        func two(_ v: Int) -> String { pad(String(v), 2, right: true, fill: "0") }
        return "\(y)-\(two(Int(mo)))-\(two(Int(d))) \(two(secs / 3600)):\(two(secs / 60 % 60)):\(two(secs % 60))."
            + pad(String(millis), 3, right: true, fill: "0") + " UTC"
    }
}
