//! The plumbing of the parallel products, shared by the forward pass, the
//! AMX kernel and the int8-dynamic kernel: how a product's jobs are run,
//! and the raw output pointer the jobs write through.

use rayon::prelude::*;

/// Runs `jobs` jobs, `job(0..jobs)`, each exactly once, on some threads
/// (rayon's pool for bulk, the query team for a few rows, or inline).
pub type Runner<'r> = &'r mut dyn FnMut(usize, &(dyn Fn(usize) + Sync));

/// Runs jobs on rayon's pool.
pub fn on_rayon(jobs: usize, job: &(dyn Fn(usize) + Sync)) {
    (0..jobs).into_par_iter().for_each(job);
}

/// Runs jobs on the calling thread.
pub fn inline(jobs: usize, job: &(dyn Fn(usize) + Sync)) {
    (0..jobs).for_each(job);
}

/// A raw pointer that may cross to rayon's threads: each task writes a
/// disjoint part of the buffer it points into.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: used only for disjoint writes, as each use site explains.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
