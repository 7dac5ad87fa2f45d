import Foundation

/// The bounded hand-off between the buffer reader and the consumer (writer
/// now, unwinder later). Bounded by the bytes it holds, not a count, because
/// a sample is 1 KiB to 65 KiB. A full queue drops the new sample and counts
/// it: back-pressure is visible, never hidden (shared DESIGN.md, Threads).
final class SampleQueue: @unchecked Sendable {
    private let condition = NSCondition()
    /// Taken slots are nil: a sample's stack bytes (up to 64 KiB) are freed
    /// when it is popped, not when the array is next compacted.
    private var items: [RawSample?] = []
    private var head = 0
    private var bytes = 0
    private var closed = false
    /// Window ends (`sprof agent`): each falls after the sample pushed
    /// before it, counted in samples pushed since the start.
    private var marks: [(afterPushed: UInt64, mark: WindowMark)] = []
    private var pushed: UInt64 = 0
    private var popped: UInt64 = 0
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
        pushed += 1
        return true
    }

    /// Ends the current window after the samples pushed so far and wakes the
    /// consumer: `next()` hands it over in order.
    func markWindowEnd(_ mark: WindowMark) {
        condition.lock()
        marks.append((pushed, mark))
        condition.signal()
        condition.unlock()
    }

    /// Wakes the consumer if samples are waiting.
    func wake() {
        condition.lock()
        if head < items.count { condition.signal() }
        condition.unlock()
    }

    enum Item {
        case sample(RawSample)
        case windowEnd(WindowMark)
    }

    /// Next sample or window end, waiting for one; nil once closed and empty.
    func next() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count && !closed && marks.first == nil { condition.wait() }
        if let m = marks.first, m.afterPushed == popped {
            marks.removeFirst()
            return .windowEnd(m.mark)
        }
        guard head < items.count else { return nil }
        let s = items[head]!
        items[head] = nil
        head += 1
        popped += 1
        bytes -= s.stackBytes.count + 128
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return .sample(s)
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

/// The end of a window of a continuous recording, as the main loop saw it.
struct WindowMark: Sendable {
    /// CLOCK_MONOTONIC at the end.
    var monotonicNanoseconds: UInt64
    /// CLOCK_REALTIME at the end (the next window's start in its metadata).
    var wallClockNanoseconds: UInt64
    /// Lost samples since the start (kernel buffer, queue, perf buffer).
    var lostSoFar: UInt64
    /// The recording ends here.
    var isLast = false
    /// Why it ended, for the last window.
    var reason = ""
}
