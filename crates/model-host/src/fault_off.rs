//! The fault hooks of a binary built without the `fault-injection` feature
//! (every release binary a user installs): each does nothing and compiles
//! away. The tests' build has `fault.rs` in this module's place.

/// Never armed.
pub fn armed() -> bool {
    false
}

/// Unused: only an armed host tokenizes the marker.
pub const MARKER: &str = "";

/// Does nothing.
pub fn set_marker(_ids: Vec<u32>) {}

/// Does nothing.
#[inline(always)]
pub fn before_forward(_ids: &[impl AsRef<[u32]>]) {}

/// Does nothing.
#[inline(always)]
pub fn after_forward() {}

/// Does nothing.
#[inline(always)]
pub fn mark_helper() {}

/// Does nothing.
#[inline(always)]
pub fn maybe_panic_in_team(_chunk: usize) {}

/// Does nothing.
#[inline(always)]
pub fn maybe_panic_in_finish(_ids: &[Vec<u32>]) {}

/// Does nothing.
#[inline(always)]
pub fn maybe_panic_in_indexer() {}

/// Does nothing.
#[inline(always)]
pub fn maybe_delay_search(_query: &str) {}
