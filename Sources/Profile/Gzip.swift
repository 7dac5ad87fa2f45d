import CZlib
import Foundation

/// gzip (RFC 1952) through zlib: pprof files are gzip-compressed protobuf.
enum Gzip {
    /// `windowBits` 15 + 16: a gzip header and trailer rather than zlib's
    /// (zlib.h, `deflateInit2`).
    static func compress(_ input: [UInt8], level: Int32 = 6) throws(ProfileError) -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .compression("deflateInit2 failed")
        }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        let status: Int32 = input.withUnsafeBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(outBuf.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw .compression("deflate returned \(status)") }
        output.removeSubrange(Int(stream.total_out)...)
        return output
    }

    /// True when `bytes` start with the gzip magic (1f 8b).
    static func isGzip(_ bytes: some Collection<UInt8>) -> Bool {
        var it = bytes.makeIterator()
        return it.next() == 0x1f && it.next() == 0x8b
    }

    /// The most a pprof file may inflate to: 1 GiB, far above what a
    /// profile holds (a system-wide recording on the dev VM: 0.6 MiB), while deflate
    /// compresses up to 1032:1 (zlib's "Technical Details"): a 10 MiB gzip
    /// bomb would otherwise ask for 10 GiB before protobuf decoding multiplies it.
    static let maxInflatedSize = 1 << 30

    /// Inflates a gzip stream (`windowBits` 15 + 16); refuses more than
    /// `limit` bytes of output, so a corrupt or hostile file (a "gzip bomb")
    /// cannot exhaust memory: the error says how much it would inflate to.
    static func decompress(_ input: [UInt8], path: String, limit: Int = maxInflatedSize) throws(ProfileError) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .compression("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        try input.withUnsafeBufferPointer { (inBuf) throws(ProfileError) in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = uInt(inBuf.count)
            repeat {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = uInt(c.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return c.count - Int(stream.avail_out)
                }
                if status != Z_OK && status != Z_STREAM_END && !(status == Z_BUF_ERROR && produced > 0) {
                    let why = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw .badGzip(path: path, reason: status == Z_BUF_ERROR ? "the file ends early (truncated)" : why)
                }
                if produced > limit - output.count {
                    throw .badGzip(path: path, reason: "it inflates to more than \(limit >> 20) MiB, more than any profile "
                                   + "needs: a damaged file, or a \"gzip bomb\"")
                }
                output.append(contentsOf: chunk[0..<produced])
                if status != Z_STREAM_END && produced == 0 && stream.avail_in == 0 {
                    throw .badGzip(path: path, reason: "the file ends early (truncated)")
                }
            } while status != Z_STREAM_END
        }
        return output
    }
}
