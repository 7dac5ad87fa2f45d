/// The captured user stack: `bytes` copied from `base` (the sampled sp)
/// upwards. The unwinder reads memory only from here — never from
/// /proc/PID/mem on the hot path — so a read outside it is a truncation.
public struct StackMemory {
    public let base: UInt64
    public let bytes: UnsafeRawBufferPointer

    @inlinable public init(base: UInt64, bytes: UnsafeRawBufferPointer) {
        self.base = base
        self.bytes = bytes
    }

    /// The 8 bytes at `address`, little-endian; nil outside the copy.
    @inlinable public func read(_ address: UInt64) -> UInt64? {
        let offset = address &- base
        // One unsigned compare covers address < base (wraps to huge).
        guard offset <= UInt64(bytes.count) &- 8, bytes.count >= 8 else { return nil }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: Int(offset), as: UInt64.self))
    }

    /// One past the last captured address.
    @inlinable public var end: UInt64 { base &+ UInt64(bytes.count) }
}
