// Symbolization fixture (Rust): a module, a generic, a trait impl, a
// closure and an #[inline(always)] helper. Built twice by build.sh, with
// legacy and with v0 symbol mangling.
mod store {
    pub struct Counter<T> { pub items: Vec<T> }

    pub trait Total { fn total(&self) -> u64; }

    impl Total for Counter<u64> {
        #[inline(never)]
        fn total(&self) -> u64 { self.items.iter().map(|x| step(*x)).sum() }
    }

    #[inline(always)]
    fn step(x: u64) -> u64 { x.wrapping_mul(6364136223846793005).rotate_left(7) }

    #[inline(never)]
    pub fn apply<F: Fn(u64) -> u64>(f: F, x: u64) -> u64 { f(x) ^ 3 }
}

use store::Total;

fn main() {
    let c = store::Counter { items: (0..std::env::args().count() as u64 + 10).collect() };
    let t = c.total();
    println!("{}", store::apply(|x| x + t, 5));
}
