//! Helpers for the crate's unit tests.

/// A seeded xorshift generator: the same pseudo-random sequence on every run, for tests that stand in for
/// the fuzzers in CI.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
