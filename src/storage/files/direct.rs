//! `O_DIRECT` reads: the file's bytes straight from the device into an aligned per-thread
//! buffer, past the page cache. annbatch's docs report the page cache "freezing" once a
//! collection is ~20x the memory; direct reads keep an epoch's memory at the loader's own.

use std::cell::RefCell;
use std::fs::File;
use std::path::Path;

/// The alignment `O_DIRECT` asks of offsets, lengths and buffers (a page covers every device's
/// logical block size).
const ALIGN: usize = 4096;

/// One aligned block of a read buffer.
#[cfg(not(unix))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

thread_local! {
    /// Aligned blocks that reads land in (the asked-for bytes are then decoded in place or
    /// copied out); grown to the largest read of the thread (an inner chunk, or a shard
    /// index) and kept.
    static BOUNCE: RefCell<Aligned> = const { RefCell::new(Aligned(Blocks::new())) };
}

/// Opens `path` for reading, with `O_DIRECT` when `direct` (Linux only), and never waits:
/// `O_NONBLOCK`, so that a FIFO in place of a file opens at once (and is then refused by the
/// caller's `fstat`) instead of waiting for a writer. Reads of regular files ignore the flag.
pub(super) fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    #[cfg(unix)]
    if !direct {
        use std::os::unix::fs::OpenOptionsExt;
        return std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path);
    }
    #[cfg(not(unix))]
    if !direct {
        return File::open(path);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flag = (rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::NONBLOCK).bits() as i32;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flag)
            .open(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "direct I/O (O_DIRECT) is only available on Linux",
        ))
    }
}

/// Fills `buf` from byte `offset` of a file opened with `O_DIRECT`: the aligned blocks that
/// cover the range are read, the range copied out.
pub(super) fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    read_with(file, offset, buf.len(), |bytes| buf.copy_from_slice(bytes))
}

/// Reads `len` bytes from byte `offset` of a file opened with `O_DIRECT` and hands them to `f`
/// where they landed, in the thread's aligned blocks that cover the range: no copy out (a
/// decoder reads them in place).
pub(super) fn read_with<R>(
    file: &File,
    offset: u64,
    len: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> std::io::Result<R> {
    let fill = |aligned: &mut Aligned| -> std::io::Result<R> {
        let at = aligned.read(file, offset, len)?;
        Ok(f(&aligned.bytes()[at]))
    };
    BOUNCE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut aligned) => fill(&mut aligned),
        Err(_) => fill(&mut Aligned::default()),
    })
}

/// Aligned blocks that `O_DIRECT` reads land in, grown to the largest read and kept.
///
/// On Unix the blocks are an anonymous mapping of their own, not heap memory: reads of many
/// sizes, allocated on one thread and freed on another, fragmented the allocator's heaps (an
/// epoch's memory grew by twice the bytes in flight), while a mapping goes back to the system
/// whole when dropped.
#[derive(Default)]
pub(super) struct Aligned(Blocks);

#[cfg(unix)]
#[derive(Default)]
struct Blocks(Option<mapping::Mapping>);

#[cfg(not(unix))]
#[derive(Default)]
struct Blocks(Vec<Block>);

#[cfg(unix)]
impl Blocks {
    const fn new() -> Self {
        Self(None)
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len() / ALIGN)
    }

    /// Replaces the blocks with `n` fresh zeroed ones.
    fn renew(&mut self, n: usize) -> std::io::Result<()> {
        self.0 = None;
        self.0 = Some(mapping::Mapping::new(n * ALIGN)?);
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |m| m.bytes())
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_mut().map_or(&mut [], |m| m.bytes_mut())
    }
}

#[cfg(not(unix))]
impl Blocks {
    const fn new() -> Self {
        Self(Vec::new())
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn renew(&mut self, n: usize) -> std::io::Result<()> {
        self.0 = bytemuck::zeroed_vec(n);
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

impl Aligned {
    /// Reads the aligned blocks covering `len` bytes at `offset` of `file` (opened with
    /// `O_DIRECT`) and returns where those bytes are in [`Self::bytes`]. `len` must be checked
    /// against the file's size first: the buffer grows to it.
    pub(super) fn read(
        &mut self,
        file: &File,
        offset: u64,
        len: usize,
    ) -> std::io::Result<std::ops::Range<usize>> {
        let align = ALIGN as u64;
        let start = offset - offset % align;
        let skip = (offset - start) as usize;
        let need = skip + len;
        let blocks = need.div_ceil(ALIGN);
        if self.0.len() < blocks {
            // Fresh blocks (pages the kernel zeroes on first touch), not a grow that copies
            // the old blocks.
            self.0.renew(size_class(blocks))?;
        }
        let bytes = &mut self.0.bytes_mut()[..blocks * ALIGN];
        let mut got = 0;
        while got < need {
            // Reads stay whole blocks at aligned offsets; a short read means the file's end.
            let n = match positioned_read(file, &mut bytes[got..], start + got as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            got += n;
        }
        if got < need {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} reach past the end of the file"),
            ));
        }
        Ok(skip..need)
    }

    /// The blocks read so far, as bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The buffer's size in bytes.
    pub(super) fn capacity(&self) -> usize {
        self.0.len() * ALIGN
    }
}

/// `blocks` rounded up to an eighth of the power of two at or above it (under 1/4 more), so that a
/// buffer reused for reads of varying lengths (inner chunks differ by a few bytes) fits most
/// of them.
fn size_class(blocks: usize) -> usize {
    let step = (blocks.next_power_of_two() / 8).max(1);
    blocks.div_ceil(step).saturating_mul(step)
}

fn positioned_read(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, buf, offset);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "direct I/O is only available on Linux",
        ))
    }
}

#[cfg(unix)]
mod mapping {
    //! An anonymous private mapping, owned: page-aligned, zeroed, unmapped when dropped.

    use std::ptr::NonNull;

    pub(super) struct Mapping {
        at: NonNull<u8>,
        len: usize,
    }

    // SAFETY: the mapping is owned by this value alone (no other pointer to it exists), so it
    // moves between threads and is shared read-only like a `Vec<u8>`.
    unsafe impl Send for Mapping {}
    // SAFETY: as above; `&Mapping` only gives `&[u8]`.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        /// Maps `len` (> 0) zeroed bytes.
        pub(super) fn new(len: usize) -> std::io::Result<Self> {
            use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
            // SAFETY: a new private anonymous mapping at an address the kernel picks aliases
            // nothing.
            let at = unsafe {
                mmap_anonymous(
                    std::ptr::null_mut(),
                    len.max(1),
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE,
                )
            }?;
            let at = NonNull::new(at.cast::<u8>())
                .ok_or_else(|| std::io::Error::other("mmap returned a null mapping"))?;
            Ok(Self {
                at,
                len: len.max(1),
            })
        }

        pub(super) fn len(&self) -> usize {
            self.len
        }

        pub(super) fn bytes(&self) -> &[u8] {
            // SAFETY: `len` readable bytes are mapped at `at` for the life of `self`.
            unsafe { std::slice::from_raw_parts(self.at.as_ptr(), self.len) }
        }

        pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
            // SAFETY: as in `bytes`, and `&mut self` makes this the only view.
            unsafe { std::slice::from_raw_parts_mut(self.at.as_ptr(), self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `at`/`len` are exactly the mapping made in `new`, unmapped once.
            // An error here (none is expected) leaves the pages mapped: a leak, not a fault.
            let _ = unsafe { rustix::mm::munmap(self.at.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        assert_eq!(size_class(1), 1);
        assert_eq!(size_class(3), 3);
        assert_eq!(size_class(27), 28);
        assert_eq!(size_class(29), 32);
        assert_eq!(size_class(33), 40);
        for blocks in 1..5000 {
            let c = size_class(blocks);
            assert!(
                c >= blocks && c <= blocks + blocks / 4 + 1,
                "{blocks} -> {c}"
            );
        }
    }
}
