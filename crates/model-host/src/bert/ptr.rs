//! A raw output pointer that may cross to rayon's threads, shared by the
//! forward pass and the AMX kernel.

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
