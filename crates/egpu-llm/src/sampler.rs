//! Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded.

/// Sampling settings. The defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches `top_p` (1: off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the top token's probability (0: off).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// A sampling setting outside its meaningful range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} is {value}: {allowed}")]
pub struct SamplerError {
    /// The setting (named as on the command line).
    pub name: &'static str,
    /// The value given.
    pub value: String,
    /// The allowed range, in words.
    pub allowed: &'static str,
}

/// Allowed ranges of the settings, as the errors state them.
pub mod ranges {
    /// Temperature.
    pub const TEMPERATURE: (f32, f32) = (0.0, 100.0);
    /// Repetition penalty.
    pub const REPEAT_PENALTY: (f32, f32) = (0.0, 10.0);
}

impl SamplerConfig {
    /// Checks every setting's range (NaN and infinities are refused everywhere).
    pub fn validate(&self) -> Result<(), SamplerError> {
        let err = |name, value: f32, allowed| {
            Err(SamplerError { name, value: value.to_string(), allowed })
        };
        let (t_lo, t_hi) = ranges::TEMPERATURE;
        if !(t_lo..=t_hi).contains(&self.temperature) {
            return err("temperature", self.temperature, "allowed 0 to 100 (0: greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("top-p", self.top_p, "allowed above 0 up to 1 (1: off)");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min-p", self.min_p, "allowed 0 to 1 (0: off)");
        }
        let (r_lo, r_hi) = ranges::REPEAT_PENALTY;
        if !(self.repeat_penalty > r_lo && self.repeat_penalty <= r_hi) {
            return err("repeat-penalty", self.repeat_penalty, "allowed above 0 up to 10 (1: off)");
        }
        Ok(())
    }
}

/// A sampler with its own random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    state: u64,
}

impl Sampler {
    /// A sampler seeded from `config.seed`.
    pub fn new(config: SamplerConfig) -> Self {
        let state = config.seed;
        Self { config, state }
    }

    /// SplitMix64: small, fast and good enough for sampling; seeded runs are reproducible.
    fn next_f32(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Picks the next token from `logits`, given the tokens so far (for the repetition penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        let mut logits = logits.to_vec();
        if c.repeat_penalty != 1.0 && c.repeat_last_n > 0 {
            let recent = &history[history.len().saturating_sub(c.repeat_last_n)..];
            let mut seen = std::collections::HashSet::new();
            for &id in recent {
                if let Some(l) = logits.get_mut(id as usize) {
                    if seen.insert(id) {
                        *l = if *l > 0.0 { *l / c.repeat_penalty } else { *l * c.repeat_penalty };
                    }
                }
            }
        }
        // Out-of-range settings are refused by `validate`; here they must merely not panic,
        // so anything that is not a positive finite temperature is greedy.
        if !(c.temperature > 0.0 && c.temperature.is_finite()) {
            return argmax(&logits);
        }
        // Candidates sorted by logit, best first (ties: lower id first, for determinism).
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / c.temperature))
            .filter(|(_, l)| !l.is_nan())
            .collect();
        if cand.is_empty() {
            return 0;
        }
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Sorting the whole vocabulary every token is the sampler's main cost: cut to the
        // top-k first, then apply min-p in logit space (p < min_p * p_max exactly when
        // logit < max + ln(min_p)) before sorting.
        if c.top_k > 0 && c.top_k < cand.len() {
            cand.select_nth_unstable_by(c.top_k - 1, order);
            cand.truncate(c.top_k);
        }
        if c.min_p > 0.0 {
            let max = cand.iter().fold(f32::NEG_INFINITY, |m, &(_, l)| m.max(l));
            let floor = max + c.min_p.ln();
            // The top token always survives, even with min_p above 1.
            cand.retain(|&(_, l)| l >= floor.min(max));
        }
        cand.sort_by(order);
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|&(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.next_f32() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r < 0.0 {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(config: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(config);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(logits, &[]) as usize] += 1;
        }
        c
    }

    const LOGITS: [f32; 5] = [2.0, 1.0, 0.5, 0.0, -1.0];

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(Sampler::new(SamplerConfig::default()).sample(&LOGITS, &[]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 3.0, 3.0]), 2);
    }

    #[test]
    fn temperature_follows_the_softmax() {
        let n = 40_000;
        let c =
            counts(SamplerConfig { temperature: 1.0, seed: 1, ..Default::default() }, &LOGITS, n);
        let z: f32 = LOGITS.iter().map(|l| l.exp()).sum();
        for (i, &l) in LOGITS.iter().enumerate() {
            let expect = l.exp() / z;
            let got = c[i] as f32 / n as f32;
            assert!((got - expect).abs() < 0.01, "token {i}: {got} vs {expect}");
        }
    }

    #[test]
    fn top_k_top_p_and_min_p_cut_the_tail() {
        let base = SamplerConfig { temperature: 1.0, seed: 2, ..Default::default() };
        let c = counts(SamplerConfig { top_k: 2, ..base.clone() }, &LOGITS, 5000);
        assert!(c[0] > 0 && c[1] > 0 && c[2..].iter().all(|&x| x == 0), "{c:?}");
        // Probabilities are about .56 .21 .13 .08 .03: top_p 0.7 keeps two tokens.
        let c = counts(SamplerConfig { top_p: 0.7, ..base.clone() }, &LOGITS, 5000);
        assert!(c[1] > 0 && c[2..].iter().all(|&x| x == 0), "{c:?}");
        // min_p 0.3 keeps tokens with p >= 0.3 × 0.56 = 0.17: two tokens.
        let c = counts(SamplerConfig { min_p: 0.3, ..base }, &LOGITS, 5000);
        assert!(c[1] > 0 && c[2..].iter().all(|&x| x == 0), "{c:?}");
    }

    #[test]
    fn out_of_range_settings_never_panic_and_are_refused() {
        let cases = [
            SamplerConfig { temperature: 1.0, min_p: 2.0, ..Default::default() },
            SamplerConfig { temperature: f32::NAN, min_p: 0.05, ..Default::default() },
            SamplerConfig { temperature: f32::INFINITY, ..Default::default() },
            SamplerConfig { temperature: 1.0, top_p: 5.0, top_k: 3, ..Default::default() },
            SamplerConfig { temperature: 1.0, top_p: 0.0, ..Default::default() },
            SamplerConfig { temperature: -1.0, ..Default::default() },
            SamplerConfig { repeat_penalty: 0.0, ..Default::default() },
        ];
        for cfg in cases {
            let mut s = Sampler::new(cfg.clone());
            let id = s.sample(&LOGITS, &[0, 1]);
            assert!((id as usize) < LOGITS.len(), "{cfg:?}");
            let err = cfg.validate().expect_err("out of range");
            assert!(err.to_string().contains("allowed"), "{err}");
        }
        // min-p above 1 keeps only the top token.
        let mut s =
            Sampler::new(SamplerConfig { temperature: 1.0, min_p: 2.0, ..Default::default() });
        assert_eq!(s.sample(&LOGITS, &[]), 0);
        assert_eq!(SamplerConfig::default().validate(), Ok(()));
        let all_nan = [f32::NAN; 3];
        assert!(
            Sampler::new(SamplerConfig { temperature: 1.0, ..Default::default() })
                .sample(&all_nan, &[])
                < 3
        );
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 3.0, ..Default::default() });
        assert_eq!(s.sample(&LOGITS, &[0]), 1, "2.0 / 3 < 1.0");
        assert_eq!(s.sample(&LOGITS, &[7, 9]), 0, "ids outside the vocabulary are ignored");
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let cfg = |seed| SamplerConfig { temperature: 1.5, seed, ..Default::default() };
        let run = |seed| {
            let mut s = Sampler::new(cfg(seed));
            (0..64).map(|_| s.sample(&LOGITS, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
