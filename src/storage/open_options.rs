//! [`OpenOptions`]: how a collection's bytes are read, from local files or an object store.

use std::time::Duration;

/// How a collection's files are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Read with `O_DIRECT` (Linux), past the page cache: for collections many times the
    /// machine's memory, where the page cache would fill, then stall the epoch on eviction.
    /// A loader requests the bytes of the two fetches after the one it decodes ahead of their
    /// turn, on 16 I/O threads shared by the process (ranges whose 4 KiB blocks touch read
    /// together), so the device's queue stays full while the decode threads work: that adds
    /// two fetches' stored bytes to the loader's memory, plus up to 256 MiB of freed read
    /// buffers kept per store for reuse. Other reads go to the device one at a time (through a
    /// per-thread aligned buffer). On a collection that fits in the page cache, leave it off.
    /// Default `false`.
    pub direct_io: bool,
    /// How a collection at an `s3://` or `http(s)://` URL is read (cargo feature `remote`).
    pub remote: RemoteOptions,
}

/// How a collection in an object store is read.
///
/// Credentials, region and endpoint come from the standard AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `AWS_SKIP_SIGNATURE`); the fields here override them.
///
/// Memory: the read-ahead holds the bytes of at most `read_ahead + 1` fetches (the one being
/// decoded and those requested ahead of it), each about what one fetch reads from a local
/// store (`preload_nchunks × chunk_size` rows of every matrix the batches carry).
///
/// ```
/// use annbatch::{OpenOptions, RemoteOptions};
/// let options = OpenOptions {
///     remote: RemoteOptions {
///         endpoint: Some("http://127.0.0.1:9000".into()),
///         concurrency: 128,
///         ..RemoteOptions::default()
///     },
///     ..OpenOptions::default()
/// };
/// assert_eq!(options.remote.read_ahead, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`, a MinIO or Ceph gateway), in place
    /// of AWS's; plain `http://` endpoints are allowed. Default: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// Unsigned requests, for public buckets. Default `false` (or `AWS_SKIP_SIGNATURE`).
    pub anonymous: bool,
    /// Range GETs in flight at once, per collection: 1 to 4096. Default 64.
    pub concurrency: usize,
    /// Fetches (`preload_nchunks` chunks each) whose bytes are requested before their turn.
    /// Default 2, at most 64; 0 reads each fetch only when it is decoded.
    pub read_ahead: usize,
    /// Ranges of one object at most this many bytes apart are read with one GET. Default
    /// 64 KiB.
    pub coalesce_gap: u64,
    /// One try's time limit (connection, headers and body); a try that times out is tried
    /// again within `retry_timeout`. Default 10 s.
    pub timeout: Duration,
    /// The time limit to connect. Default 5 s.
    pub connect_timeout: Duration,
    /// Retries of a failed request (server errors, timeouts, refused connections), with
    /// exponential backoff (0.1 s doubling, at most 2 s). Default 10: a server failing one
    /// request in seven still serves an epoch.
    pub retries: usize,
    /// No retry starts after this long since the first try, so a request fails within about
    /// `retry_timeout + timeout`. Default 30 s: longer than `timeout`, so a stalled answer is
    /// retried.
    pub retry_timeout: Duration,
    /// Take S3 credentials from this machine's instance role (the EC2 / ECS metadata
    /// service) when the environment has none. Default `false` (or
    /// `ANNBATCH_REMOTE_INSTANCE_CREDENTIALS`): without credentials an S3 open fails at once
    /// with [`crate::RemoteFailure::NoCredentials`] instead of probing a metadata service that
    /// is not there (a timeout read as "unreachable").
    pub instance_credentials: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            anonymous: false,
            concurrency: 64,
            read_ahead: 2,
            coalesce_gap: 64 << 10,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retries: 10,
            retry_timeout: Duration::from_secs(30),
            instance_credentials: false,
        }
    }
}

impl OpenOptions {
    /// The defaults, with [`RemoteOptions::from_env`]: what the Python package, the C ABI and
    /// the command-line tool open collections with.
    ///
    /// # Errors
    /// [`crate::Error::InvalidParameter`] for an `ANNBATCH_REMOTE_*` variable that does not parse.
    pub fn from_env() -> crate::Result<Self> {
        Ok(Self {
            remote: RemoteOptions::from_env()?,
            ..Self::default()
        })
    }
}

impl RemoteOptions {
    /// The defaults, overridden by the environment: `ANNBATCH_REMOTE_ENDPOINT`,
    /// `ANNBATCH_REMOTE_ANONYMOUS` (`1`/`true`), `ANNBATCH_REMOTE_INSTANCE_CREDENTIALS`
    /// (`1`/`true`), `ANNBATCH_REMOTE_CONCURRENCY`,
    /// `ANNBATCH_REMOTE_READ_AHEAD`, `ANNBATCH_REMOTE_COALESCE_GAP` (bytes),
    /// `ANNBATCH_REMOTE_TIMEOUT_S`, `ANNBATCH_REMOTE_CONNECT_TIMEOUT_S`,
    /// `ANNBATCH_REMOTE_RETRIES`, `ANNBATCH_REMOTE_RETRY_TIMEOUT_S` (seconds may be fractions).
    ///
    /// # Errors
    /// [`crate::Error::InvalidParameter`] for a variable that does not parse.
    pub fn from_env() -> crate::Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> crate::Result<Self> {
        let mut o = Self::default();
        let bad = |name: &'static str, value: &str, what: &str| {
            crate::Error::parameter(name, value, format!("expected {what}"))
        };
        let number = |name: &'static str| -> crate::Result<Option<u64>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| bad(name, &v, "a whole number"))
                })
                .transpose()
        };
        let seconds = |name: &'static str| -> crate::Result<Option<Duration>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| bad(name, &v, "seconds (a non-negative number)"))
                })
                .transpose()
        };
        if let Some(v) = var("ANNBATCH_REMOTE_ENDPOINT") {
            o.endpoint = Some(v);
        }
        let flag = |name: &'static str| -> crate::Result<Option<bool>> {
            var(name)
                .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" | "" => Ok(false),
                    _ => Err(bad(name, &v, "true or false")),
                })
                .transpose()
        };
        if let Some(on) = flag("ANNBATCH_REMOTE_ANONYMOUS")? {
            o.anonymous = on;
        }
        if let Some(on) = flag("ANNBATCH_REMOTE_INSTANCE_CREDENTIALS")? {
            o.instance_credentials = on;
        }
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(n) = number("ANNBATCH_REMOTE_CONCURRENCY")? {
            o.concurrency = size(n);
        }
        if let Some(n) = number("ANNBATCH_REMOTE_READ_AHEAD")? {
            o.read_ahead = size(n);
        }
        if let Some(n) = number("ANNBATCH_REMOTE_COALESCE_GAP")? {
            o.coalesce_gap = n;
        }
        if let Some(n) = number("ANNBATCH_REMOTE_RETRIES")? {
            o.retries = size(n);
        }
        if let Some(d) = seconds("ANNBATCH_REMOTE_TIMEOUT_S")? {
            o.timeout = d;
        }
        if let Some(d) = seconds("ANNBATCH_REMOTE_CONNECT_TIMEOUT_S")? {
            o.connect_timeout = d;
        }
        if let Some(d) = seconds("ANNBATCH_REMOTE_RETRY_TIMEOUT_S")? {
            o.retry_timeout = d;
        }
        Ok(o)
    }
}

/// The URL in `location` when it names an object store (`scheme://…`), else `None` (a path).
pub(crate) fn url_of(location: &std::path::Path) -> Option<&str> {
    let text = location.to_str()?;
    let (scheme, rest) = text.split_once("://")?;
    (!scheme.is_empty()
        && !rest.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::url_of;
    use std::path::Path;

    #[test]
    fn knobs_come_from_the_environment_or_are_refused() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        let o = super::RemoteOptions::from_vars(vars(&[
            ("ANNBATCH_REMOTE_CONCURRENCY", "128"),
            ("ANNBATCH_REMOTE_TIMEOUT_S", "2.5"),
            ("ANNBATCH_REMOTE_ANONYMOUS", "true"),
        ]))
        .expect("valid");
        assert_eq!(o.concurrency, 128);
        assert_eq!(o.timeout, std::time::Duration::from_millis(2500));
        assert!(o.anonymous);
        for bad in [
            ("ANNBATCH_REMOTE_CONCURRENCY", "many"),
            ("ANNBATCH_REMOTE_TIMEOUT_S", "-1"),
            ("ANNBATCH_REMOTE_ANONYMOUS", "perhaps"),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([bad]));
            assert!(
                super::RemoteOptions::from_vars(vars(pairs)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert_eq!(url_of(Path::new("s3://b/c.zarr")), Some("s3://b/c.zarr"));
        assert_eq!(
            url_of(Path::new("https://h/c.zarr")),
            Some("https://h/c.zarr")
        );
        assert_eq!(url_of(Path::new("gs://b/c")), Some("gs://b/c"));
        assert_eq!(url_of(Path::new("/data/c.zarr")), None);
        assert_eq!(url_of(Path::new("c.zarr")), None);
        assert_eq!(url_of(Path::new("a b://x")), None);
        assert_eq!(url_of(Path::new("s3://")), None);
    }
}
