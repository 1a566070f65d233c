//! `predictive_ses`: seasonal exponential smoothing (multiplicative Holt-Winters without
//! trend) of each tenant's hourly access count, with a daily season of 24 hourly factors.
//! An object's probability is that of at least one access in a Poisson process whose rate is
//! the tenant's forecast times the object's share of the tenant's accesses over the last day:
//! `P = 1 - exp(-forecast_per_hour x horizon_hours x object_count_24h / tenant_count_24h)`.
//!
//! Training picks the smoothing constants (level `alpha`, season `gamma`) from a small grid
//! by the one-step-ahead squared error of the hourly counts of the training log, then leaves
//! the state at its end; `observe` goes on smoothing with the fitted constants.

use super::{Access, Features, Model, PredictError};

const SEASON: usize = 24;

/// The grid and horizon of [`Ses`].
#[derive(Debug, Clone, PartialEq)]
pub struct SesParams {
    pub horizon_secs: f64,
    pub alphas: Vec<f64>,
    pub gammas: Vec<f64>,
}

impl Default for SesParams {
    fn default() -> Self {
        SesParams {
            horizon_secs: 3_600.0,
            alphas: vec![0.05, 0.1, 0.2, 0.4],
            gammas: vec![0.05, 0.1, 0.2, 0.4],
        }
    }
}

#[derive(Debug, Clone)]
struct TenantState {
    level: f64,
    season: [f64; SEASON],
    /// The hour (since the epoch) being counted, and its count so far.
    hour: i64,
    count: f64,
    initialised: bool,
}

impl TenantState {
    fn new(hour: i64) -> TenantState {
        TenantState {
            level: 0.0,
            season: [1.0; SEASON],
            hour,
            count: 0.0,
            initialised: false,
        }
    }

    fn forecast(&self, hour: i64) -> f64 {
        self.level * self.season[hour.rem_euclid(SEASON as i64) as usize]
    }

    /// Closes the hour being counted with its count; returns the squared one-step error.
    fn close_hour(&mut self, alpha: f64, gamma: f64) -> f64 {
        let y = self.count;
        let h = self.hour.rem_euclid(SEASON as i64) as usize;
        let err = if self.initialised {
            (y - self.forecast(self.hour)).powi(2)
        } else {
            0.0
        };
        if !self.initialised {
            self.level = y;
            self.initialised = true;
        } else {
            let s = self.season[h].max(1e-3);
            let level = alpha * (y / s) + (1.0 - alpha) * self.level;
            if level > 0.0 {
                self.season[h] = gamma * (y / level) + (1.0 - gamma) * s;
            }
            self.level = level;
        }
        self.hour += 1;
        self.count = 0.0;
        err
    }

    /// Counts one access at `hour`, first closing the hours before it.
    fn count_at(&mut self, hour: i64, alpha: f64, gamma: f64) -> (f64, usize) {
        let (mut err, mut n) = (0.0, 0);
        while self.hour < hour {
            err += self.close_hour(alpha, gamma);
            n += 1;
        }
        self.count += 1.0;
        (err, n)
    }
}

/// Seasonal exponential smoothing per tenant (`predictive_ses`).
#[derive(Debug, Clone)]
pub struct Ses {
    params: SesParams,
    alpha: f64,
    gamma: f64,
    tenants: Vec<Option<TenantState>>,
}

impl Ses {
    pub fn new(params: SesParams) -> Ses {
        Ses {
            alpha: params.alphas.first().copied().unwrap_or(0.1),
            gamma: params.gammas.first().copied().unwrap_or(0.1),
            params,
            tenants: Vec::new(),
        }
    }

    /// The fitted smoothing constants `(alpha, gamma)`.
    pub fn constants(&self) -> (f64, f64) {
        (self.alpha, self.gamma)
    }

    /// The tenant's forecast number of accesses in the hour containing `now`.
    pub fn tenant_forecast_per_hour(&self, tenant: u32, now: f64) -> f64 {
        match self.tenants.get(tenant as usize) {
            Some(Some(s)) if s.initialised => s.forecast((now / 3_600.0).floor() as i64),
            _ => 0.0,
        }
    }

    fn run(&mut self, log: &[Access], alpha: f64, gamma: f64) -> (f64, usize) {
        self.tenants.clear();
        let (mut err, mut n) = (0.0, 0);
        for a in log {
            let (e, k) = self.step(a, alpha, gamma);
            err += e;
            n += k;
        }
        (err, n)
    }

    fn step(&mut self, a: &Access, alpha: f64, gamma: f64) -> (f64, usize) {
        let hour = (a.timestamp / 3_600.0).floor() as i64;
        let t = a.tenant as usize;
        if self.tenants.len() <= t {
            self.tenants.resize(t + 1, None);
        }
        self.tenants[t]
            .get_or_insert_with(|| TenantState::new(hour))
            .count_at(hour, alpha, gamma)
    }
}

impl Model for Ses {
    fn name(&self) -> &'static str {
        "predictive_ses"
    }

    fn horizon_secs(&self) -> f64 {
        self.params.horizon_secs
    }

    fn train(&mut self, log: &[Access]) -> Result<(), PredictError> {
        let span = match (log.first(), log.last()) {
            (Some(a), Some(b)) => b.timestamp - a.timestamp,
            _ => 0.0,
        };
        if span < 2.0 * 3_600.0 * SEASON as f64 {
            return Err(PredictError::NotEnoughData(format!(
                "predictive_ses needs at least two days of training log, got {span:.0} s"
            )));
        }
        let mut best: Option<(f64, f64, f64)> = None;
        for &alpha in &self.params.alphas.clone() {
            for &gamma in &self.params.gammas.clone() {
                let (err, n) = self.run(log, alpha, gamma);
                let mse = err / n.max(1) as f64;
                if best.is_none_or(|(b, _, _)| mse < b) {
                    best = Some((mse, alpha, gamma));
                }
            }
        }
        let (_, alpha, gamma) = best.ok_or_else(|| {
            PredictError::Training("predictive_ses: empty grid of constants".into())
        })?;
        self.alpha = alpha;
        self.gamma = gamma;
        self.run(log, alpha, gamma);
        Ok(())
    }

    fn observe(&mut self, access: &Access) {
        let (alpha, gamma) = (self.alpha, self.gamma);
        self.step(access, alpha, gamma);
    }

    fn p_access(&self, f: &Features) -> f64 {
        let tenant_day = f.tenant_counts[1];
        if tenant_day <= 0.0 {
            return 0.0;
        }
        let share = (f.object_counts[2] / tenant_day).min(1.0);
        let rate = self.tenant_forecast_per_hour(f.tenant, f.now) * share;
        1.0 - (-rate * self.params.horizon_secs / 3_600.0).exp()
    }
}
