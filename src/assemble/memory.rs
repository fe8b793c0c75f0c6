//! Where a batch's arrays live while they are assembled: plain vectors for host batches, pooled
//! buffers for DLPack batches (which tensor batches are made of, `crate::tensor`). The assembly
//! code is written once against [`Memory`] and fills either in place.

use crate::error::Result;

/// An element type of batch arrays: `i32` (CSR row pointers, column indices), `i64` (category
/// codes, row ids), `f32` and `f64` (values).
pub trait Element: Copy + Default + Send + Sync + 'static {}

impl Element for i32 {}
impl Element for i64 {}
impl Element for f32 {}
impl Element for f64 {}

/// Allocates the arrays batches are assembled into.
pub trait Memory: Sync {
    /// An array of `T` owned by the batch being built, written through [`Memory::slice`].
    type Array<T: Element>: Send;

    /// An array of `n` elements. Its contents are unspecified: the assembly writes every one.
    ///
    /// # Errors
    /// When the memory cannot be allocated.
    fn array<T: Element>(&self, n: usize) -> Result<Self::Array<T>>;

    /// The elements of `array`, to write.
    fn slice<T: Element>(array: &mut Self::Array<T>) -> &mut [T];

    /// Shortens `array` to its first `n` elements (no-op when it has no more).
    ///
    /// # Errors
    /// When the memory's view cannot be narrowed.
    fn truncate<T: Element>(array: &mut Self::Array<T>, n: usize) -> Result<()>;
}

/// Host batches: each array a fresh `Vec`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMemory;

impl Memory for HostMemory {
    type Array<T: Element> = Vec<T>;

    fn array<T: Element>(&self, n: usize) -> Result<Vec<T>> {
        Ok(vec![T::default(); n])
    }

    fn slice<T: Element>(array: &mut Vec<T>) -> &mut [T] {
        array
    }

    fn truncate<T: Element>(array: &mut Vec<T>, n: usize) -> Result<()> {
        array.truncate(n);
        Ok(())
    }
}

/// A batch array of `n` elements written in place by `fill`, which must write every element.
pub(crate) fn filled<M: Memory, T: Element>(
    memory: &M,
    n: usize,
    fill: impl FnOnce(&mut [T]),
) -> Result<M::Array<T>> {
    let mut array = memory.array::<T>(n)?;
    fill(M::slice(&mut array));
    Ok(array)
}
