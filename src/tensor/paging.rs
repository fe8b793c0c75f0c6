//! Paging in the pooled batch memory before the first batch needs it.
//!
//! A fetch's batches take ~110 MB at 4096/32/256. The first write to each 4 KiB page of it
//! faults, and the kernel clears the page: ~27k faults, whoever takes them. A loader takes them
//! when it is built ([`page_in`], on every core), so that the first fetch's decoding does not.
//!
//! Transparent huge pages (`MADV_HUGEPAGE`) were tried and dropped: where the kernel compacts
//! memory on request (`defrag` = `madvise`, the common default) a fault on advised memory can
//! wait for compaction, and on our 2-core VM a loader's build then took 110-130 ms in most runs
//! instead of 26-31 ms (`benches/python/first_batch.py`, interleaved runs).

/// The distance between the writes of [`page_in`]: the smallest page size.
const PAGE: usize = 4 << 10;

/// Pages in `regions` (`(data, nbytes)` each) by writing a zero byte to every 4 KiB page, on up
/// to as many threads as cores: the kernel's clearing of the new pages (which is the cost) runs
/// in parallel, and no pass writes all of the memory (a fill did, serially: ~100 ms for the
/// ~110 MB of a 4096/32/256 loader). Every region must be memory this process allocated and
/// holds, whose contents do not matter, and that nothing else reads or writes during the call
/// (fresh `empty` storages); a region at address 0 is skipped.
pub(crate) fn page_in(regions: &[(usize, usize)]) {
    let pages: Vec<usize> = regions
        .iter()
        .filter(|&&(data, _)| data != 0)
        .flat_map(|&(data, nbytes)| (0..nbytes).step_by(PAGE).map(move |at| data + at))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(pages.len().div_ceil(1024))
        .max(1);
    let touch = |pages: &[usize]| {
        for &page in pages {
            // SAFETY: `page` lies inside a region the caller holds and that nothing else
            // accesses during this call (see above); a byte store is aligned, and the
            // contents it overwrites do not matter. Volatile: the store must happen.
            unsafe { std::ptr::write_volatile(page as *mut u8, 0) };
        }
    };
    if threads == 1 {
        return touch(&pages);
    }
    std::thread::scope(|scope| {
        for part in pages.chunks(pages.len().div_ceil(threads)) {
            scope.spawn(move || touch(part));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_in_writes_zeros_at_page_starts_only() {
        let mut v = vec![7u8; 10 * PAGE + 5];
        let mut w = vec![9u8; 3];
        page_in(&[
            (v.as_mut_ptr() as usize, v.len()),
            (w.as_mut_ptr() as usize, w.len()),
            (0, 1 << 30),
        ]);
        for (i, &b) in v.iter().enumerate() {
            assert_eq!(b, if i % PAGE == 0 { 0 } else { 7 }, "byte {i}");
        }
        assert_eq!(w, [0, 9, 9]);
        page_in(&[]);
    }
}
