//! Transparent huge pages for pooled batch memory.
//!
//! A fetch's batches take ~100 MB at 4096/32/256. Paged in 4 KiB at a time, that memory costs
//! ~25k page faults (~45 ms on the machines we measure) the first time it is written: the
//! loader pays them once per storage, when it is built (the prewarm) or when the pool grows.
//! Where the kernel gives transparent huge pages on request (`enabled` = `madvise`, the
//! common default), asking for them turns those faults into one per 2 MiB. Nothing changes
//! where they are off or always on: the advice is a hint, and its failure is ignored.

/// The huge page size of x86-64 and of 4 KiB-page arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back the whole 2 MiB pages inside `[data, data + nbytes)` with
/// transparent huge pages. `data..data + nbytes` must be memory this process allocated and
/// still holds; the advice never changes its contents.
pub(crate) fn advise(data: usize, nbytes: usize) {
    let start = data.next_multiple_of(HUGE_PAGE);
    let end = data.saturating_add(nbytes) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    advise_range(start, end - start);
}

#[cfg(target_os = "linux")]
fn advise_range(start: usize, len: usize) {
    // SAFETY: `start..start + len` lies inside an allocation the caller holds (see `advise`);
    // MADV_HUGEPAGE changes how the kernel backs those pages, never what they hold.
    let _ = unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn advise_range(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_without_a_whole_huge_page_are_left_alone() {
        // Nothing to advise: must return without touching memory (the addresses are fake).
        advise(1, 100);
        advise(HUGE_PAGE + 1, HUGE_PAGE);
        advise(usize::MAX - 10, 100);
    }

    #[test]
    fn advised_memory_keeps_its_contents() {
        let mut v = vec![7u8; 3 * HUGE_PAGE];
        advise(v.as_ptr() as usize, v.len());
        assert!(v.iter().all(|&b| b == 7));
        v[HUGE_PAGE] = 1;
        assert_eq!(
            v.iter().map(|&b| u64::from(b)).sum::<u64>(),
            7 * (3 * HUGE_PAGE as u64) - 6
        );
    }
}
