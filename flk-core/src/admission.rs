//! Per-tenant admission control: a token bucket (rate and burst) and a quota per UTC day.
//! Shared by svc-verify and the gateway, which read the same limits from the tenants file.
//! Time is passed in, so the arithmetic is tested without clocks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A tenant's limits (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Sustained submissions per second (token bucket refill rate).
    pub rate_per_sec: Option<f64>,
    /// Bucket size; defaults to one second of `rate_per_sec` (at least 1).
    pub burst: Option<f64>,
    /// Submissions per UTC day.
    pub daily_quota: Option<u64>,
}

/// Why a submission was not admitted, and how long until it would be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Over the rate limit; a token is available after `retry_after`.
    RateLimited { retry_after: Duration },
    /// The day's quota of `limit` is used; it resets at the next UTC midnight.
    QuotaExceeded { limit: u64, retry_after: Duration },
}

impl Refusal {
    /// The wire error code (PROTOCOL.md section 5).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::QuotaExceeded { .. } => "quota_exceeded",
        }
    }

    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::RateLimited { retry_after } | Refusal::QuotaExceeded { retry_after, .. } => {
                *retry_after
            }
        }
    }
}

/// One tenant's admission state.
#[derive(Debug)]
pub struct Admission {
    bucket: Option<Mutex<TokenBucket>>,
    quota: Option<Mutex<DailyQuota>>,
}

impl Admission {
    /// Refuses a rate that is not a positive number or a burst that is not finite. A burst
    /// below 1 is raised to 1 (one submission must fit); a burst without a rate is ignored.
    pub fn new(limits: Limits) -> Result<Admission, String> {
        let bucket = match limits.rate_per_sec {
            None => None,
            Some(rate) if rate.is_finite() && rate > 0.0 => {
                let burst = limits.burst.unwrap_or(rate);
                if !burst.is_finite() {
                    return Err(format!("burst must be a finite number, got {burst}"));
                }
                Some(Mutex::new(TokenBucket::new(rate, burst.max(1.0))))
            }
            Some(rate) => return Err(format!("rate_limit_per_sec must be positive, got {rate}")),
        };
        let quota = limits.daily_quota.map(|limit| {
            Mutex::new(DailyQuota {
                limit,
                day: i32::MIN,
                used: 0,
            })
        });
        Ok(Admission { bucket, quota })
    }

    /// True when neither a rate limit nor a quota is set.
    pub fn is_unlimited(&self) -> bool {
        self.bucket.is_none() && self.quota.is_none()
    }

    /// Rate limit first, then quota: a refused submission does not use quota.
    pub fn admit(&self, mono: Instant, now: OffsetDateTime) -> Result<(), Refusal> {
        if let Some(b) = &self.bucket {
            let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
            b.take(mono)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        if let Some(q) = &self.quota {
            let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
            let limit = q.limit;
            q.take(now)
                .map_err(|retry_after| Refusal::QuotaExceeded { limit, retry_after })?;
        }
        Ok(())
    }
}

/// Classic token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Submissions admitted per UTC day.
#[derive(Debug)]
struct DailyQuota {
    limit: u64,
    day: i32,
    used: u64,
}

impl DailyQuota {
    fn take(&mut self, now: OffsetDateTime) -> Result<(), Duration> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let day = now.date().to_julian_day();
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
        if self.used < self.limit {
            self.used += 1;
            return Ok(());
        }
        let next_midnight = now.date().next_day().map(|d| d.midnight().assume_utc());
        let wait = next_midnight
            .map(|m| m - now)
            .unwrap_or(time::Duration::HOUR);
        Err(Duration::from_secs_f64(wait.as_seconds_f64().max(1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let a = Admission::new(Limits {
            rate_per_sec: Some(10.0),
            burst: Some(3.0),
            daily_quota: None,
        })
        .expect("limits");
        let t0 = Instant::now();
        let now = datetime!(2026-11-25 12:00 UTC);
        for _ in 0..3 {
            a.admit(t0, now).expect("within burst");
        }
        let Err(Refusal::RateLimited { retry_after }) = a.admit(t0, now) else {
            panic!("fourth call in the same instant must be refused");
        };
        assert!(
            (retry_after.as_secs_f64() - 0.1).abs() < 1e-9,
            "{retry_after:?}"
        );
        a.admit(t0 + Duration::from_millis(100), now)
            .expect("one token after 100 ms");
        assert!(a.admit(t0 + Duration::from_millis(100), now).is_err());
    }

    #[test]
    fn quota_resets_at_utc_midnight_and_says_when() {
        let a = Admission::new(Limits {
            daily_quota: Some(2),
            ..Limits::default()
        })
        .expect("limits");
        let t = Instant::now();
        let evening = datetime!(2026-11-25 23:00 UTC);
        a.admit(t, evening).expect("1");
        a.admit(t, evening).expect("2");
        let Err(Refusal::QuotaExceeded { limit, retry_after }) = a.admit(t, evening) else {
            panic!("third call must be over quota");
        };
        assert_eq!(limit, 2);
        assert_eq!(retry_after, Duration::from_secs(3600));
        a.admit(t, datetime!(2026-11-26 00:00 UTC))
            .expect("a new day");
    }

    #[test]
    fn invalid_limits_are_refused() {
        for bad in [
            Limits {
                rate_per_sec: Some(0.0),
                ..Limits::default()
            },
            Limits {
                rate_per_sec: Some(f64::NAN),
                ..Limits::default()
            },
            Limits {
                rate_per_sec: Some(5.0),
                burst: Some(f64::INFINITY),
                daily_quota: None,
            },
        ] {
            assert!(Admission::new(bad).is_err(), "{bad:?}");
        }
        assert!(
            Admission::new(Limits::default())
                .expect("none")
                .is_unlimited()
        );
    }
}
