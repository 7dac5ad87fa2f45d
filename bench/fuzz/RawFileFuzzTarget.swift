// libFuzzer entry point for raw recordings (docs/raw-format.md): compiled as
// module FuzzRaw against the SprofCapture library by bench/fuzz.sh (target
// `raw`), which builds only Capture's file-reading sources (RawFile,
// RawFileReader, RawSample, Dump, the error enum, Syscalls; not the BPF parts,
// which need libbpf).
//
// Input: a raw recording's bytes, any bytes. They are read as
// `sprof report app.raw` and `sprof dump -v` read them: the header and every
// record frame, then each sample decoded by a cursor with its mapping
// snapshot, its frames and stack bytes touched, and the whole file dumped
// verbose. Everything must end in a reader or a CaptureError — never a trap.
//
// Checked, not only survived: the cursor yields exactly ``sampleCount``
// samples, and the samples of one tgid exactly ``sampleCounts[tgid]``.
import SprofBase
import SprofCapture

@_cdecl("LLVMFuzzerTestOneInput")
public func rawFileFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let reader = try? RawFileReader(bytes: bytes, name: "fuzz") else { return 0 }
    var cursor = reader.makeSampleCursor()
    var n = 0
    var firstTgid: Int32?
    var sum: UInt64 = 0
    while let (s, snapshot) = cursor.next() {
        n += 1
        if firstTgid == nil { firstTgid = s.tgid }
        for a in s.kernelStack { sum &+= a.rawValue }
        for a in s.userFrames { sum &+= a.rawValue; _ = snapshot?.mapping(containing: a) }
        sum &+= UInt64(s.userStack.count) &+ UInt64(s.capturedUserStackCount)
        _ = snapshot?.mapping(containing: s.ip)
        _ = reader.process(pid: s.tgid)
        if let snapshot { _ = reader.mappings(pid: snapshot.pid, generation: snapshot.generation) }
    }
    precondition(n == reader.sampleCount, "the cursor yields \(n) samples, the reader counted \(reader.sampleCount)")
    if let pid = firstTgid {
        var one = reader.makeSampleCursor(pid: pid)
        var m = 0
        while one.next() != nil { m += 1 }
        precondition(m == reader.sampleCounts[pid], "pid \(pid): \(m) samples, counted \(reader.sampleCounts[pid] ?? 0)")
    }
    _ = RawDump.render(reader, options: .init(limit: 50, verbose: true))
    _ = sum
    return 0
}
