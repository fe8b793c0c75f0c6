//! Copies of decoded runs into batch memory with non-temporal ("streaming") stores.
//!
//! A loader scatters every row of a fetch to a random place in its batches: thousands of runs
//! of a few KiB, each into cold memory that the trainer reads only later. Plain stores first
//! read every destination cache line (read-for-ownership) and, restarting at each run, leave
//! the hardware prefetcher no stream to follow: a profile of the loader showed the index
//! widening bound on its stores, at 2.8× the time of the same copies made in order. Streaming
//! stores write whole lines through write-combining buffers and skip that read.
//!
//! Runs shorter than [`MIN_STREAMED_BYTES`] and other architectures than x86-64 take the plain
//! copy. Streamed stores are weakly ordered: whoever copies calls [`fence`] before the memory is
//! read or handed on, once for a series of copies (a fence per row, ~100k an epoch, waited on
//! the write-combining buffers to drain each time).

/// Runs shorter than this are copied plainly: the partial lines at either end would cost more
/// than the streamed middle saves.
const MIN_STREAMED_BYTES: usize = 2048;

/// Orders the streamed stores of this thread before its later loads and stores: call it after
/// a series of [`copy`] / [`widen_u16`] and before `dst` is read or handed to another thread.
pub(crate) fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

/// Starts loading the first and last cache lines of `run`, ahead of a copy into it: the lines
/// that a streamed copy writes with plain stores (they hold the neighbouring runs' ends too),
/// and where a kernel copy into scattered rows starts each row cold. Issued one run (or one
/// `preadv`) ahead, the misses overlap the copy before instead of stalling at each row's ends:
/// 1.05-1.11x (index widening) and 1.04-1.07x more (values read into place) at 4096/32/256.
/// Touching every line of a run instead was slower (0.96x).
pub(crate) fn prefetch_ends<T>(run: &[T]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = run;
    #[cfg(target_arch = "x86_64")]
    if let Some(last) = run.last() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: prefetching is a hint and never faults; both addresses lie in `run`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(run.as_ptr().cast());
            _mm_prefetch::<_MM_HINT_T0>((last as *const T).cast());
        }
    }
}

/// Copies `src` into `dst` (equal lengths); [`fence`] before `dst` is read.
pub(crate) fn copy<T: bytemuck::Pod>(src: &[T], dst: &mut [T]) {
    assert_eq!(src.len(), dst.len(), "streaming copy of unequal runs");
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of_val(src) >= MIN_STREAMED_BYTES {
        let dst: &mut [u8] = bytemuck::cast_slice_mut(dst);
        let src: &[u8] = bytemuck::cast_slice(src);
        x86::copy_bytes(src, dst);
        return;
    }
    dst.copy_from_slice(src);
}

/// Widens `src` into `dst` (equal lengths) and returns the largest value seen (0 when empty);
/// [`fence`] before `dst` is read.
pub(crate) fn widen_u16(src: &[u16], dst: &mut [i32]) -> u16 {
    assert_eq!(src.len(), dst.len(), "streaming widening of unequal runs");
    #[cfg(target_arch = "x86_64")]
    if std::mem::size_of_val(dst) >= MIN_STREAMED_BYTES {
        return x86::widen_u16(src, dst);
    }
    plain_widen_u16(src, dst)
}

fn plain_widen_u16(src: &[u16], dst: &mut [i32]) -> u16 {
    let mut max = 0;
    for (d, &s) in dst.iter_mut().zip(src) {
        max = max.max(s);
        *d = i32::from(s);
    }
    max
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_max_epi16, _mm_set1_epi16, _mm_setzero_si128,
        _mm_storeu_si128, _mm_stream_si128, _mm_unpackhi_epi16, _mm_unpacklo_epi16, _mm_xor_si128,
    };

    /// Bytes before `ptr` reaches a cache line (64 bytes), at most `len`. Streaming stores
    /// only write whole lines: a partly written line is flushed as a partial write, which
    /// costs about as much as the whole line (once per run, at each end, for short runs).
    fn head(ptr: *const u8, len: usize) -> usize {
        ptr.align_offset(64).min(len)
    }

    /// Copies `src` into `dst` (equal lengths).
    pub(super) fn copy_bytes(src: &[u8], dst: &mut [u8]) {
        assert_eq!(src.len(), dst.len(), "streaming copy of unequal runs");
        let n = dst.len();
        let h = head(dst.as_ptr(), n);
        dst[..h].copy_from_slice(&src[..h]);
        let lines = (n - h) / 64;
        let (s, d) = (src[h..].as_ptr(), dst[h..].as_mut_ptr());
        for line in 0..lines {
            // SAFETY: 64 bytes from `line * 64` lie inside both runs past the head; `d` is
            // line-aligned (16-byte alignment is what streaming stores need).
            unsafe {
                let (s, d) = (s.add(line * 64), d.add(line * 64));
                for k in 0..4 {
                    let v = _mm_loadu_si128(s.add(16 * k).cast::<__m128i>());
                    _mm_stream_si128(d.add(16 * k).cast::<__m128i>(), v);
                }
            }
        }
        let done = h + lines * 64;
        dst[done..].copy_from_slice(&src[done..]);
    }

    /// Widens `src` into `dst` (equal lengths); the largest value seen.
    pub(super) fn widen_u16(src: &[u16], dst: &mut [i32]) -> u16 {
        assert_eq!(src.len(), dst.len(), "streaming widening of unequal runs");
        let n = dst.len();
        let h = head(dst.as_ptr().cast(), n * 4) / 4;
        let mut max = super::plain_widen_u16(&src[..h], &mut dst[..h]);
        // Whole lines: 16 values widen to 64 bytes.
        let lines = (n - h) / 16;
        let (s, d) = (src[h..].as_ptr(), dst[h..].as_mut_ptr());
        // Unsigned maxima through the signed instruction: flip the top bit on the way in and
        // out.
        // SAFETY: SSE2 is part of the x86-64 baseline.
        let (flip, zero) = unsafe { (_mm_set1_epi16(i16::MIN), _mm_setzero_si128()) };
        let mut top = flip;
        for line in 0..lines {
            // SAFETY: 16 values from `line * 16` lie inside both runs past the head; `d` is
            // line-aligned (16-byte alignment is what streaming stores need).
            unsafe {
                let (s, d) = (s.add(line * 16), d.add(line * 16));
                for half in 0..2 {
                    let v = _mm_loadu_si128(s.add(8 * half).cast::<__m128i>());
                    top = _mm_max_epi16(top, _mm_xor_si128(v, flip));
                    _mm_stream_si128(d.add(8 * half).cast(), _mm_unpacklo_epi16(v, zero));
                    _mm_stream_si128(d.add(8 * half + 4).cast(), _mm_unpackhi_epi16(v, zero));
                }
            }
        }
        let mut lanes = [0u16; 8];
        // SAFETY: `lanes` is 16 writable bytes; an unaligned store.
        unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), top) };
        for lane in lanes {
            max = max.max(lane ^ 0x8000);
        }
        let done = h + lines * 16;
        max.max(super::plain_widen_u16(&src[done..], &mut dst[done..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment() {
        let src: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
        for offset in 0..5 {
            for len in [0, 1, 7, 511, 512, 513, 1024, 2999 - offset] {
                let mut dst = vec![-1.0f32; len + 8];
                copy(
                    &src[offset..offset + len],
                    &mut dst[offset % 4..offset % 4 + len],
                );
                assert_eq!(
                    &dst[offset % 4..offset % 4 + len],
                    &src[offset..offset + len]
                );
                assert!(dst[..offset % 4].iter().all(|&v| v == -1.0));
                assert!(dst[offset % 4 + len..].iter().all(|&v| v == -1.0));
            }
        }
    }

    #[test]
    fn widens_and_finds_the_largest_value() {
        let src: Vec<u16> = (0..4000u32).map(|i| (i * 7919 % 65536) as u16).collect();
        for offset in 0..5 {
            for len in [0, 1, 9, 600, 1024, 1031, 3990] {
                let run = &src[offset..offset + len];
                let mut dst = vec![-1i32; len + 4];
                let max = widen_u16(run, &mut dst[offset % 4..offset % 4 + len]);
                fence();
                let want: Vec<i32> = run.iter().map(|&v| i32::from(v)).collect();
                assert_eq!(&dst[offset % 4..offset % 4 + len], &want[..]);
                assert_eq!(max, run.iter().copied().max().unwrap_or(0));
                assert!(dst[offset % 4 + len..].iter().all(|&v| v == -1));
            }
        }
        // The top bit set: the unsigned maximum, not the signed one.
        let run = vec![0x8001u16; 1024];
        let mut dst = vec![0; 1024];
        assert_eq!(widen_u16(&run, &mut dst), 0x8001);
        fence();
    }
}
