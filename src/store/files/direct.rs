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
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

thread_local! {
    /// Aligned blocks that reads land in (the asked-for bytes are then decoded in place or
    /// copied out); grown to the largest read of the thread (an inner chunk, or a shard
    /// index) and kept.
    static BOUNCE: RefCell<Aligned> = const { RefCell::new(Aligned(Vec::new())) };
}

/// Opens `path` for reading, with `O_DIRECT` when `direct` (Linux only).
pub(super) fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    if !direct {
        return File::open(path);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flag = rustix::fs::OFlags::DIRECT.bits() as i32;
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
#[derive(Default)]
pub(super) struct Aligned(Vec<Block>);

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
            self.0.resize(blocks, Block([0; ALIGN]));
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.0[..blocks]);
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
        bytemuck::cast_slice(&self.0)
    }

    /// The buffer's size in bytes.
    pub(super) fn capacity(&self) -> usize {
        self.0.len() * ALIGN
    }
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
