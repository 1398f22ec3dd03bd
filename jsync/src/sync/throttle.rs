//! `--bwlimit`: paces the file data a sender sends to a rate, as rsync's
//! option does, so that a sync can run beside other traffic on a slow link.
//! Every lane draws from one schedule; each message (at most 1 MiB) leaves
//! when the ones before it have had their time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A sending schedule at a fixed rate, shared by the lanes.
#[derive(Debug)]
pub(crate) struct Throttle {
    bytes_per_sec: u64,
    /// When the next message may leave.
    next: Mutex<Instant>,
}

impl Throttle {
    /// A schedule of `bytes_per_sec` (more than 0).
    pub(crate) fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the turn of a message of `n` bytes, and books its time.
    pub(crate) async fn pace(&self, n: usize) {
        let start = {
            let mut next = self.next.lock().expect("poisoned");
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_leave_at_the_rate() {
        let t = Throttle::new(1 << 20);
        let began = Instant::now();
        // Four messages of 256 KiB at 1 MiB/s: the fourth may leave after
        // the first three have had their 0.75 s.
        for _ in 0..4 {
            t.pace(256 << 10).await;
        }
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(740), "{took:?}");
    }
}
