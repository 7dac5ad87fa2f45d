// Symbolization fixture (Swift): a struct method, a generic function, a
// class with a computed property and a closure. Recipe: build.sh.
struct Meter {
    var samples: [Double]
    @inline(never) func average() -> Double {
        samples.reduce(0, +) / Double(max(samples.count, 1))
    }
}

final class Station {
    var meter: Meter
    init(meter: Meter) { self.meter = meter }
    var reading: Double {
        @inline(never) get { meter.average() * 2 }
    }
}

@inline(never) func combine<T: Numeric>(_ a: T, _ b: T) -> T { a * b + a }

let station = Station(meter: Meter(samples: CommandLine.arguments.map { Double($0.count) }))
let f: (Double) -> Double = { combine($0, station.reading) }
print(f(3))
