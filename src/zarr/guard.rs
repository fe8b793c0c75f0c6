//! Calls into zarrs that cannot panic out: zarrs trusts some bytes it decodes (e.g. the lengths
//! inside a `vlen-utf8` chunk, 0.23.14) and panics on a damaged chunk instead of returning an
//! error. Every call this crate makes into zarrs on data from a file goes through [`guarded`],
//! which turns such a panic into [`Error::Zarr`] naming the element.
//!
//! The default panic hook would still print the panic to stderr; a hook installed once,
//! chained to whatever hook was there before, stays silent for panics raised inside zarrs
//! while a guarded call is running (on any thread: zarrs decodes on rayon's workers) and hands
//! every other panic to the previous hook.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::error::{panic_message, Error, Result};

/// Guarded calls running now, over all threads.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_zarrs = info.location().is_some_and(|l| l.file().contains("zarrs"));
            if !(in_zarrs && ACTIVE.load(Ordering::Relaxed) > 0) {
                previous(info);
            }
        }));
    });
}

/// Runs `f` (a zarrs call on the element at `path`); a panic inside it is an error.
pub(crate) fn guarded<T>(path: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_hook();
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    ACTIVE.fetch_sub(1, Ordering::Relaxed);
    outcome.unwrap_or_else(|payload| {
        Err(Error::zarr(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the data is damaged (the zarr library failed on it: {})",
                    panic_message(payload.as_ref())
                ),
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_an_error_naming_the_element() {
        let err = guarded::<()>("X/data", || panic!("boom")).expect_err("caught");
        assert!(matches!(&err, Error::Zarr { path, .. } if path == "X/data"));
        assert!(err.to_string().contains("damaged") && err.to_string().contains("boom"));
        assert_eq!(guarded("X", || Ok(3)).expect("ok"), 3);
        assert_eq!(ACTIVE.load(Ordering::Relaxed), 0);
    }
}
