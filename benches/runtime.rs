//! Benchmarks of the runtime against raw ractor and tokio (filled in below).

fn main() {}
