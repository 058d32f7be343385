//! Test-only fault injection: panics on purpose, so the tests can prove that
//! a panic anywhere becomes an error for exactly the requests it touched.
//!
//! Compiled only with the `fault-injection` feature, which only the test
//! suite's build turns on (`scripts/test`); a release binary a user
//! installs has [`fault_off`](crate) in its place, whose hooks are empty.
//! Even then, off unless the environment variable `VEMBED_TEST_FAULT` is
//! set when the host starts. Its value is a
//! comma-separated list:
//!
//! - `backend`: the forward pass panics on a batch holding the text
//!   [`MARKER`];
//! - `team`: a chunk of the small-batch team panics during the forward pass
//!   of a batch holding [`MARKER`] (on a helper thread when one takes part);
//! - `finish`: building the answer of a job holding [`MARKER`] panics;
//! - `indexer`: the first indexing job of the host panics;
//! - `delay`: a forward pass of a batch holding [`MARKER`] first sleeps
//!   [`DELAY`] (a slow service, for the tests of remote models);
//! - `search`: a search whose query holds [`MARKER`] first sleeps [`DELAY`]
//!   (a slow search, for the test that it holds up nothing behind it).
//!
//! When the variable is unset every hook is one relaxed load of a flag.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The text that triggers the armed faults.
pub const MARKER: &str = "vembed test fault marker";

/// How long the `delay` fault holds a marked forward pass.
pub const DELAY: std::time::Duration = std::time::Duration::from_secs(4);

#[derive(Default)]
struct Faults {
    backend: bool,
    team: bool,
    finish: bool,
    delay: bool,
    search: bool,
    indexer: AtomicBool,
    /// The token ids of [`MARKER`], set by the first model that loads.
    marker: OnceLock<Vec<u32>>,
}

static FAULTS: OnceLock<Option<Faults>> = OnceLock::new();
/// A forward pass of a marked batch is running (the `team` fault).
static TEAM_ARMED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread is a team helper.
    static HELPER: Cell<bool> = const { Cell::new(false) };
}

fn faults() -> Option<&'static Faults> {
    FAULTS
        .get_or_init(|| {
            let v = std::env::var("VEMBED_TEST_FAULT").ok().filter(|v| !v.is_empty())?;
            let has = |k: &str| v.split(',').any(|p| p.trim() == k);
            tracing::warn!("test faults armed: {v}");
            Some(Faults {
                backend: has("backend"),
                team: has("team"),
                finish: has("finish"),
                delay: has("delay"),
                search: has("search"),
                indexer: AtomicBool::new(has("indexer")),
                marker: OnceLock::new(),
            })
        })
        .as_ref()
}

/// Whether faults are armed at all (a model then tokenizes [`MARKER`]).
pub fn armed() -> bool {
    faults().is_some()
}

/// Records the marker's token ids (from the first model's tokenizer).
pub fn set_marker(ids: Vec<u32>) {
    if let Some(f) = faults() {
        let _ = f.marker.set(ids);
    }
}

fn is_marked(ids: &[impl AsRef<[u32]>]) -> bool {
    faults()
        .and_then(|f| f.marker.get())
        .is_some_and(|m| ids.iter().any(|t| t.as_ref() == m.as_slice()))
}

/// Called at the start of a forward pass.
pub fn before_forward(ids: &[impl AsRef<[u32]>]) {
    let Some(f) = faults() else { return };
    if !is_marked(ids) {
        return;
    }
    if f.delay {
        std::thread::sleep(DELAY);
    }
    if f.backend {
        panic!("injected fault: the backend panics on the marked text");
    }
    if f.team {
        TEAM_ARMED.store(true, Ordering::Release);
    }
}

/// Called when a forward pass ends, panicked or not.
pub fn after_forward() {
    if faults().is_some() {
        TEAM_ARMED.store(false, Ordering::Release);
    }
}

/// Marks the current thread as a team helper.
pub fn mark_helper() {
    HELPER.with(|h| h.set(true));
}

/// Called before each team chunk: panics once per marked forward pass, on
/// a helper when one takes part.
pub fn maybe_panic_in_team(chunk: usize) {
    if faults().is_none() || !TEAM_ARMED.load(Ordering::Acquire) {
        return;
    }
    let on_helper = HELPER.with(Cell::get);
    if (on_helper || chunk > 0) && TEAM_ARMED.swap(false, Ordering::AcqRel) {
        panic!("injected fault: a team chunk panics (helper thread: {on_helper})");
    }
}

/// Called while building a job's answer.
pub fn maybe_panic_in_finish(ids: &[Vec<u32>]) {
    if faults().is_some_and(|f| f.finish) && is_marked(ids) {
        panic!("injected fault: building the answer panics");
    }
}

/// Called at the start of an indexing job: panics for the first one.
pub fn maybe_panic_in_indexer() {
    if faults().is_some_and(|f| f.indexer.swap(false, Ordering::AcqRel)) {
        panic!("injected fault: the indexer panics");
    }
}

/// Called before a search through the host.
pub fn maybe_delay_search(query: &str) {
    if faults().is_some_and(|f| f.search) && query.contains(MARKER) {
        std::thread::sleep(DELAY);
    }
}
