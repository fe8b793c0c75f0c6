//! The codecs of an inner chunk that [`super::shard_reader`] decodes itself, straight into a
//! caller's buffer: raw little-endian bytes, blosc (c-blosc, any of its compressors and
//! shuffles) and zstd. Any other chain is read through zarrs.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};

use serde_json::Value;

/// How the bytes of an inner chunk become its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InnerCodec {
    /// `bytes` (little-endian) alone: the stored bytes are the elements.
    Raw,
    /// `bytes` then `blosc`.
    Blosc,
    /// `bytes` then `zstd`.
    Zstd,
}

/// Why an inner chunk could not be decoded (reported as a corrupt chunk by the caller).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("{found} bytes stored where {expected} were expected (uncompressed chunk)")]
    RawLength { found: usize, expected: usize },
    #[error("not a valid blosc buffer")]
    BloscHeader,
    #[error("the blosc header says {found} decoded bytes, the array {expected}")]
    BloscLength { found: usize, expected: usize },
    #[error("blosc failed to decode the chunk (code {0})")]
    Blosc(c_int),
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error("zstd decoded {found} bytes, the array expects {expected}")]
    ZstdLength { found: usize, expected: usize },
}

impl InnerCodec {
    /// The codec of an inner chunk whose `codecs` (zarr v3 metadata) are `bytes` (little-endian
    /// or, for one-byte types, without an endianness) optionally followed by blosc or zstd;
    /// `None` for any other chain, and on big-endian hosts.
    pub(crate) fn of(codecs: &Value) -> Option<Self> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let codecs = codecs.as_array()?;
        let (first, rest) = codecs.split_first()?;
        if name_of(first)? != "bytes" {
            return None;
        }
        match first
            .pointer("/configuration/endian")
            .and_then(Value::as_str)
        {
            None | Some("little") => {}
            Some(_) => return None,
        }
        match rest {
            [] => Some(Self::Raw),
            [one] => match name_of(one)? {
                "blosc" => Some(Self::Blosc),
                "zstd" => Some(Self::Zstd),
                _ => None,
            },
            _ => None,
        }
    }

    /// Decodes `stored` into `out` (exactly the chunk's decoded size), or, when `part` is given,
    /// only the bytes `part` of the decoded chunk into `out` (exactly `part.len()` long). A part
    /// is decoded alone where the codec allows it (blosc's blocks), else the whole chunk is
    /// decoded into `whole` first. Returns nothing: `out` is filled or an error says why.
    pub(crate) fn decode(
        self,
        stored: &[u8],
        out: &mut [u8],
        chunk_bytes: usize,
        part: Option<std::ops::Range<usize>>,
    ) -> Result<(), DecodeError> {
        match self {
            Self::Raw => {
                // The caller reads only `part` of a raw chunk: `stored` is already that part.
                if stored.len() != out.len() {
                    return Err(DecodeError::RawLength {
                        found: stored.len(),
                        expected: out.len(),
                    });
                }
                out.copy_from_slice(stored);
                Ok(())
            }
            Self::Blosc => blosc_decode(stored, out, chunk_bytes, part),
            Self::Zstd => match part {
                None => zstd_decode(stored, out),
                Some(part) => with_whole(chunk_bytes, |whole| {
                    zstd_decode(stored, whole)?;
                    out.copy_from_slice(&whole[part]);
                    Ok(())
                }),
            },
        }
    }
}

fn name_of(codec: &Value) -> Option<&str> {
    codec.get("name").and_then(Value::as_str)
}

thread_local! {
    /// A whole decoded chunk, for codecs that cannot decode a part alone.
    static WHOLE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static ZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` on a per-thread buffer of `len` bytes (grown once, not zeroed per call).
fn with_whole<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    WHOLE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0; len]),
    })
}

fn zstd_decode(stored: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let mut run = |d: &mut zstd::bulk::Decompressor<'static>| {
        d.decompress_to_buffer(stored, out)
            .map_err(DecodeError::Zstd)
    };
    let n = ZSTD.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(DecodeError::Zstd)?);
            }
            match slot.as_mut() {
                Some(d) => run(d),
                None => Err(DecodeError::Zstd(std::io::Error::other("no zstd context"))),
            }
        }
        Err(_) => run(&mut zstd::bulk::Decompressor::new().map_err(DecodeError::Zstd)?),
    })?;
    if n != out.len() {
        return Err(DecodeError::ZstdLength {
            found: n,
            expected: out.len(),
        });
    }
    Ok(())
}

/// The decoded size and type size of a blosc buffer, after checking that it is one.
fn blosc_header(stored: &[u8]) -> Result<(usize, usize), DecodeError> {
    let mut nbytes = 0usize;
    // SAFETY: c-blosc reads at most `stored.len()` bytes of `stored` and writes one usize.
    let valid = unsafe {
        blosc_src::blosc_cbuffer_validate(
            stored.as_ptr().cast::<c_void>(),
            stored.len(),
            &mut nbytes,
        )
    };
    if valid != 0 {
        return Err(DecodeError::BloscHeader);
    }
    let (mut typesize, mut flags) = (0usize, 0 as c_int);
    // SAFETY: the buffer was validated above, so its 16-byte header is there to read.
    unsafe {
        blosc_src::blosc_cbuffer_metainfo(
            stored.as_ptr().cast::<c_void>(),
            &mut typesize,
            &mut flags,
        );
    }
    Ok((nbytes, typesize.max(1)))
}

fn blosc_decode(
    stored: &[u8],
    out: &mut [u8],
    chunk_bytes: usize,
    part: Option<std::ops::Range<usize>>,
) -> Result<(), DecodeError> {
    let (nbytes, typesize) = blosc_header(stored)?;
    if nbytes != chunk_bytes {
        return Err(DecodeError::BloscLength {
            found: nbytes,
            expected: chunk_bytes,
        });
    }
    let whole = |out: &mut [u8]| -> Result<(), DecodeError> {
        // SAFETY: the buffer was validated; c-blosc writes at most `out.len()` bytes into `out`
        // (it checks the decoded size against `destsize`), with one thread of its own.
        let n = unsafe {
            blosc_src::blosc_decompress_ctx(
                stored.as_ptr().cast::<c_void>(),
                out.as_mut_ptr().cast::<c_void>(),
                out.len(),
                1,
            )
        };
        if usize::try_from(n).ok() != Some(out.len()) {
            return Err(DecodeError::Blosc(n));
        }
        Ok(())
    };
    let Some(part) = part else {
        if out.len() != nbytes {
            return Err(DecodeError::BloscLength {
                found: nbytes,
                expected: out.len(),
            });
        }
        return whole(out);
    };
    let items = (part.start / typesize, part.len() / typesize);
    let aligned = part.start % typesize == 0 && part.len() % typesize == 0;
    match (aligned, c_int::try_from(items.0), c_int::try_from(items.1)) {
        (true, Ok(start), Ok(nitems)) if part.end <= nbytes && out.len() == part.len() => {
            // SAFETY: validated buffer; items `start..start + nitems` lie inside the decoded
            // chunk (checked above), and `out` holds exactly their `nitems * typesize` bytes.
            let n = unsafe {
                blosc_src::blosc_getitem(
                    stored.as_ptr().cast::<c_void>(),
                    start,
                    nitems,
                    out.as_mut_ptr().cast::<c_void>(),
                )
            };
            if usize::try_from(n).ok() != Some(out.len()) {
                return Err(DecodeError::Blosc(n));
            }
            Ok(())
        }
        _ => with_whole(chunk_bytes, |buf| {
            whole(buf)?;
            match buf.get(part) {
                Some(bytes) if bytes.len() == out.len() => {
                    out.copy_from_slice(bytes);
                    Ok(())
                }
                _ => Err(DecodeError::BloscLength {
                    found: nbytes,
                    expected: out.len(),
                }),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_plain_chains_are_decoded_here() {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        let blosc = json!({"name": "blosc", "configuration": {}});
        let zstd = json!({"name": "zstd", "configuration": {}});
        let gzip = json!({"name": "gzip", "configuration": {}});
        assert_eq!(InnerCodec::of(&json!([bytes])), Some(InnerCodec::Raw));
        assert_eq!(
            InnerCodec::of(&json!([{"name": "bytes"}])),
            Some(InnerCodec::Raw)
        );
        assert_eq!(
            InnerCodec::of(&json!([bytes, blosc])),
            Some(InnerCodec::Blosc)
        );
        assert_eq!(
            InnerCodec::of(&json!([bytes, zstd])),
            Some(InnerCodec::Zstd)
        );
        assert_eq!(InnerCodec::of(&json!([bytes, gzip])), None);
        assert_eq!(InnerCodec::of(&json!([bytes, blosc, zstd])), None);
        let big = json!({"name": "bytes", "configuration": {"endian": "big"}});
        assert_eq!(InnerCodec::of(&json!([big])), None);
        assert_eq!(InnerCodec::of(&json!([])), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut out = vec![0u8; 64];
        for stored in [&[][..], &[1u8; 3][..], &[2u8; 40][..], &[0xffu8; 100][..]] {
            assert!(InnerCodec::Blosc
                .decode(stored, &mut out, 64, None)
                .is_err());
            assert!(InnerCodec::Blosc
                .decode(stored, &mut out[..8], 64, Some(8..16))
                .is_err());
            assert!(InnerCodec::Zstd.decode(stored, &mut out, 64, None).is_err());
        }
        assert!(InnerCodec::Raw
            .decode(&[0u8; 3], &mut out, 64, None)
            .is_err());
    }
}
