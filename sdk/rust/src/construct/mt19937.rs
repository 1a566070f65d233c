//! numpy's legacy `RandomState`: MT19937 seeded by `init_genrand`, 53-bit doubles, and the
//! polar (Marsaglia) Gaussian sampler whose second value is cached across calls. The field's
//! agents draw `coh_star`'s directions from `np.random.seed(seed); np.random.randn(3)`.

const N: usize = 624;
const M: usize = 397;

/// The generator state (`np.random.RandomState` with the legacy Gaussian cache).
#[derive(Clone)]
pub struct LegacyRandomState {
    mt: [u32; N],
    pos: usize,
    gauss: Option<f64>,
}

impl LegacyRandomState {
    /// `np.random.seed(seed)` for `0 <= seed < 2^32` (numpy refuses other integers).
    pub fn new(seed: u32) -> LegacyRandomState {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        LegacyRandomState {
            mt,
            pos: N,
            gauss: None,
        }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % N] & LOWER);
            let mut v = self.mt[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= MATRIX_A;
            }
            self.mt[i] = v;
        }
        self.pos = 0;
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A double in [0, 1) from 53 random bits (`random_sample`).
    pub fn next_f64(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// A standard normal value (`legacy_gauss`).
    pub fn gauss(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_mt19937() {
        // init_genrand(5489): the reference implementation's first outputs.
        let mut r = LegacyRandomState::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
        // np.random.seed(0); np.random.random_sample() == 0.5488135039273248
        let mut r = LegacyRandomState::new(0);
        assert_eq!(r.next_f64(), 0.548_813_503_927_324_8);
        // np.random.seed(0); np.random.randn(2) == [1.764052345967664, 0.4001572083672233]
        let mut r = LegacyRandomState::new(0);
        assert_eq!(r.gauss(), 1.764_052_345_967_664);
        assert_eq!(r.gauss(), 0.400_157_208_367_223_3);
    }
}
