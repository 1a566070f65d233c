//! Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"): attempt `n` waits a uniform random time in `[0, min(cap, base * 2^n)]`, and never
//! less than the server's `Retry-After`.

use std::time::Duration;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (>= 1).
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let jitter = Duration::from_nanos(fastrand::u64(
            0..=exp.as_nanos().min(u128::from(u64::MAX)) as u64,
        ));
        match retry_after {
            Some(ra) => jitter.max(ra),
            None => jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_within_the_exponential_bound_and_after_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        };
        for retry in 0..10 {
            let bound = Duration::from_millis((10u64 << retry.min(20)).min(50));
            for _ in 0..100 {
                assert!(p.delay(retry, None) <= bound);
            }
        }
        assert!(p.delay(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        // The jitter spreads: not every draw is the bound.
        assert!((0..100).any(|_| p.delay(3, None) < Duration::from_millis(40)));
    }
}
