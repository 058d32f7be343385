//! The one place weights files are memory-mapped.

use std::fs::File;
use std::io;
use std::path::Path;

use memmap2::{Advice, Mmap};

/// A read-only mapping of a weights file.
pub struct Weights {
    map: Mmap,
}

impl Weights {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> io::Result<Weights> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only and private to this process. Model
        // files are written once (by fetch/import, through a rename) and never
        // modified in place; if another program truncated the file while it is
        // mapped, reads would fault, which is the documented hazard of any mmap.
        // The candle engine copies the weights into tensors and drops the
        // mapping; the native engine reads f32 weights in place from it.
        let map = unsafe { Mmap::map(&file)? };
        Ok(Weights { map })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops this process's page-table entries for the file (`MADV_DONTNEED`).
    /// The pages stay in the page cache, and any later read maps them again
    /// (a minor fault each), so the data read is unchanged: this only stops
    /// counting file pages that the process is not using in its RSS and PSS.
    pub fn release_pages(&self) {
        // SAFETY: the mapping is private and read-only and the file is never
        // modified while mapped (see `open`), so there are no private
        // modifications for DONTNEED to discard: a later read of any
        // address sees the same bytes as before, and every reference into
        // the mapping stays valid.
        if let Err(e) = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) } {
            tracing::debug!("madvise(DONTNEED) failed: {e}");
        }
    }

    /// Asks the kernel to read the whole file ahead (`MADV_WILLNEED`), so the
    /// copy into tensors does not stall on one page fault after another.
    pub fn will_need(&self) {
        if let Err(e) = self.map.advise(Advice::WillNeed) {
            tracing::debug!("madvise(WILLNEED) failed: {e}");
        }
    }
}

/// Checks that every floating-point tensor of a safetensors file holds only
/// finite values: a corrupt file (a block overwritten with 0xFF, say) must be
/// refused at load, not serve NaN vectors. About 10 ms for 90 MB.
pub fn check_finite(bytes: &[u8]) -> Result<(), String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    for (name, view) in tensors.tensors() {
        let bad = match view.dtype() {
            safetensors::Dtype::F32 => any_exponent_all_ones::<4>(view.data(), 0x7f80_0000),
            safetensors::Dtype::F16 => any_exponent_all_ones::<2>(view.data(), 0x7c00),
            safetensors::Dtype::BF16 => any_exponent_all_ones::<2>(view.data(), 0x7f80),
            _ => false,
        };
        if bad {
            return Err(format!(
                "tensor {name} holds non-finite values (NaN or infinity): the weights are \
                 corrupt; fetch or import the model again"
            ));
        }
    }
    Ok(())
}

/// Whether any little-endian `N`-byte value has all of `mask`'s bits set
/// (an IEEE float's exponent all ones: NaN or infinity). Branch-free per
/// block so the compiler vectorizes it.
fn any_exponent_all_ones<const N: usize>(data: &[u8], mask: u32) -> bool {
    data.chunks(16 << 10).any(|block| {
        let mut hit = false;
        for c in block.chunks_exact(N) {
            let mut b = [0u8; 4];
            b[..N].copy_from_slice(c);
            hit |= u32::from_le_bytes(b) & mask == mask;
        }
        hit
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_nan_and_infinity() {
        let ok: Vec<u8> =
            [1.0f32, -2.5, 0.0, f32::MIN_POSITIVE].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert!(!super::any_exponent_all_ones::<4>(&ok, 0x7f80_0000));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(u32::MAX)] {
            let mut v = ok.clone();
            v.extend_from_slice(&bad.to_le_bytes());
            assert!(super::any_exponent_all_ones::<4>(&v, 0x7f80_0000), "{bad}");
        }
        let half_inf = 0x7c00u16.to_le_bytes();
        assert!(super::any_exponent_all_ones::<2>(&half_inf, 0x7c00));
        assert!(!super::any_exponent_all_ones::<2>(&0x3c00u16.to_le_bytes(), 0x7c00));
    }
}
