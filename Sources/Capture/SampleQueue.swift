import Foundation

/// The bounded hand-off between the buffer reader and the consumer (writer
/// now, unwinder later). Bounded by the bytes it holds, not a count, because
/// a sample is 1 KiB to 65 KiB. A full queue drops the new sample and counts
/// it: back-pressure is visible, never hidden (shared DESIGN.md, Threads).
final class SampleQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [RawSample] = []
    private var head = 0
    private var bytes = 0
    private var closed = false
    private(set) var dropped: UInt64 = 0
    let byteLimit: Int

    init(byteLimit: Int) { self.byteLimit = byteLimit }

    /// Adds a sample; false (and counted) when the queue is full. The
    /// consumer is not woken: the reader calls ``wake()`` once per batch it
    /// took from the kernel's buffer (a wake per sample cost a futex call and
    /// a context switch each: ~5 µs a sample, a fifth of the recorder's CPU).
    func push(_ sample: RawSample) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let size = sample.stackBytes.count + 128
        if bytes + size > byteLimit && bytes > 0 {
            dropped += 1
            return false
        }
        items.append(sample)
        bytes += size
        return true
    }

    /// Wakes the consumer if samples are waiting.
    func wake() {
        condition.lock()
        if head < items.count { condition.signal() }
        condition.unlock()
    }

    /// Next sample, waiting for one; nil once closed and empty.
    func pop() -> RawSample? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count && !closed { condition.wait() }
        guard head < items.count else { return nil }
        let s = items[head]
        head += 1
        bytes -= s.stackBytes.count + 128
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return s
    }

    /// No more pushes; `pop` returns what is left, then nil.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    var droppedCount: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return dropped
    }
}
