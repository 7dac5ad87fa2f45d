// swiftc -O: main -> run -> level1 -> level2 -> leafHot (module unwind_swift; the symbol
// names are the mangled ones listed in expected.json).
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

var sink: UInt64 = 0
/// Outer-loop iterations, read by bench/compare.py through /proc/PID/mem (symbol found with nm).
let sprofWork = Atomic<UInt64>(0)

@inline(never) func leafHot(_ x0: UInt64, _ n: Int) -> UInt64 {
    var x = x0
    for _ in 0..<n { x = x &* 6364136223846793005 &+ 1442695040888963407; x ^= x >> 29 }
    return x
}
// Work after each call: no tail calls.
@inline(never) func level2(_ x: UInt64, _ n: Int) -> UInt64 { let r = leafHot(x, n); sink = r; return r &+ 1 }
@inline(never) func level1(_ x: UInt64, _ n: Int) -> UInt64 { let r = level2(x, n); sink = r; return r ^ 3 }
@inline(never) func run(_ seconds: Double) -> UInt64 {
    let end = now() + seconds
    var a: UInt64 = 1
    while now() < end { a = a &+ level1(a, 100_000); sprofWork.add(1, ordering: .relaxed) }
    return a
}
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

let seconds = CommandLine.arguments.count > 1 ? Double(CommandLine.arguments[1]) ?? 2 : 2
print("pid=\(getpid())")
fflush(stdout)
sink = run(seconds)
