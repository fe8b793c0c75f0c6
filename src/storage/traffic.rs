//! [`RemoteTraffic`]: what reading a collection from an object store has cost so far.

/// Requests sent to an object store and bytes received, since the collection was opened
/// (every GET and HEAD, read-ahead included; retries are counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteTraffic {
    /// Requests that succeeded.
    pub requests: u64,
    /// Bytes of their bodies.
    pub bytes: u64,
}

impl std::ops::AddAssign for RemoteTraffic {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.bytes += other.bytes;
    }
}
