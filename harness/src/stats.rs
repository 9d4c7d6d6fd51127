//! Statistics for A/B comparisons: medians, a bootstrap confidence
//! interval of the ratio of medians, the Mann-Whitney U test, and the
//! verdict that combines them with a noise threshold. Pure and
//! deterministic (the bootstrap's random stream is seeded).

use serde::{Deserialize, Serialize};

/// The median (mean of the middle two for an even count). NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `q`-quantile (0 <= q <= 1), interpolating linearly between the
/// two nearest order statistics (numpy's default). NaN when empty.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, frac) = (at.floor() as usize, at - at.floor());
    match v.get(lo + 1) {
        Some(hi) => v[lo] + (hi - v[lo]) * frac,
        None => v[lo],
    }
}

/// A small deterministic random stream (splitmix64): the same seed gives
/// the same stream on every machine and every version (the bootstrap's
/// resamples, a sweep's round order).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Shuffles `xs` in place (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }
}

/// The percentile bootstrap interval of median(b) / median(a) at level
/// `1 - alpha`, from `resamples` resamples of each side, with `seed`.
/// None when a side is empty or a resampled baseline median is 0.
pub fn bootstrap_ratio_ci(
    a: &[f64],
    b: &[f64],
    alpha: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    bootstrap_stat_ratio_ci(a, b, median, alpha, resamples, seed)
}

/// As `bootstrap_ratio_ci`, for the ratio of the `q`-quantiles.
pub fn bootstrap_quantile_ratio_ci(
    a: &[f64],
    b: &[f64],
    q: f64,
    alpha: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    bootstrap_stat_ratio_ci(a, b, |xs| quantile(xs, q), alpha, resamples, seed)
}

fn bootstrap_stat_ratio_ci(
    a: &[f64],
    b: &[f64],
    stat: impl Fn(&[f64]) -> f64,
    alpha: f64,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Rng(seed);
    let mut ratios = Vec::with_capacity(resamples);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        let ma = stat(&ra);
        if ma == 0.0 {
            return None;
        }
        ratios.push(stat(&rb) / ma);
    }
    ratios.sort_by(|x, y| x.total_cmp(y));
    let at = |q: f64| {
        let i = ((q * (ratios.len() - 1) as f64).round() as usize).min(ratios.len() - 1);
        ratios[i]
    };
    Some((at(alpha / 2.0), at(1.0 - alpha / 2.0)))
}

/// The two-sided Mann-Whitney U test of `a` against `b`: the statistic U of
/// `a` and the p-value. Exact (the distribution of U by counting) when the
/// samples are small and have no ties; otherwise the normal approximation
/// with tie correction and continuity correction, as SciPy's
/// `mannwhitneyu(..., method="asymptotic")`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Ranks of the pooled samples, ties sharing their mean rank.
    let mut pooled: Vec<(f64, usize)> = a
        .iter()
        .map(|x| (*x, 0))
        .chain(b.iter().map(|x| (*x, 1)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in ranks.iter_mut().take(j + 1).skip(i) {
            *k = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = pooled
        .iter()
        .zip(&ranks)
        .filter(|(p, _)| p.1 == 0)
        .map(|(_, r)| r)
        .sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let (f1, f2) = (n1 as f64, n2 as f64);
    if tie_term == 0.0 && n1 * n2 <= 2500 && n1 <= 50 && n2 <= 50 {
        return Some((u1, exact_p(n1, n2, u1)));
    }
    let mu = f1 * f2 / 2.0;
    let nn = f1 + f2;
    let sigma = (f1 * f2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)))).sqrt();
    if sigma == 0.0 {
        return Some((u1, 1.0));
    }
    let z = ((u1 - mu).abs() - 0.5).max(0.0) / sigma;
    Some((u1, (2.0 * normal_sf(z)).min(1.0)))
}

/// P(|U - mean| >= |u - mean|) for samples of sizes n1, n2 without ties,
/// from the exact distribution of U (counts of orderings by their U).
fn exact_p(n1: usize, n2: usize, u: f64) -> f64 {
    // row[j][s], for the current i: orderings of i values of `a` and j of
    // `b` in which the number of (a, b) pairs with a > b is s. Appending an
    // `a` after j values of `b` adds j pairs; appending a `b` adds none. One
    // row is kept (memory (n2 + 1) x (n1 n2 + 1)).
    let max_u = n1 * n2;
    let mut row = vec![vec![0f64; max_u + 1]; n2 + 1];
    for i in 0..=n1 {
        for j in 0..=n2 {
            let mut next = vec![0f64; max_u + 1];
            if i == 0 && j == 0 {
                next[0] = 1.0;
            }
            if i > 0 {
                // Last element an `a` (row[j] still holds i - 1).
                for (n, r) in next[j..].iter_mut().zip(&row[j]) {
                    *n += r;
                }
            }
            if j > 0 {
                // Last element a `b` (row[j - 1] already holds i).
                for (n, r) in next.iter_mut().zip(&row[j - 1]) {
                    *n += r;
                }
            }
            row[j] = next;
        }
    }
    let dist = &row[n2];
    let total: f64 = dist.iter().sum();
    let mean = (n1 * n2) as f64 / 2.0;
    let d = (u - mean).abs();
    let tail: f64 = dist
        .iter()
        .enumerate()
        .filter(|(s, _)| (*s as f64 - mean).abs() >= d - 1e-9)
        .map(|(_, c)| c)
        .sum();
    (tail / total).min(1.0)
}

/// The standard normal survival function, 1 - Phi(z), to about 1e-7
/// (Abramowitz and Stegun 7.1.26 on erfc, with the series near 0 avoided
/// by its accuracy there).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // Numerical Recipes' erfcc: fractional error below 1.2e-7 everywhere.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
    /// Neither way is better (a CPU share): a change is only "changed".
    Neither,
}

/// The outcome of comparing one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    /// A significant change beyond the noise in a metric with no better
    /// direction.
    Changed,
    /// The difference is not significant, or smaller than the noise
    /// threshold.
    NoDifference,
    /// Not enough samples to say.
    Unclear,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "WORSE",
            Verdict::Changed => "changed",
            Verdict::NoDifference => "no significant difference",
            Verdict::Unclear => "unclear (too few samples)",
        }
    }
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub median_a: f64,
    pub median_b: f64,
    /// median(b) / median(a).
    pub ratio: f64,
    /// The `1 - alpha` bootstrap interval of the ratio.
    pub ci_low: f64,
    pub ci_high: f64,
    /// The p-value that decided the verdict: the Mann-Whitney p-value
    /// adjusted by Holm's method across the `family` metrics tested
    /// together (equal to `p_raw` for a family of 1).
    pub p_value: f64,
    /// The Mann-Whitney p-value of this metric on its own.
    #[serde(default = "nan")]
    pub p_raw: f64,
    /// How many metrics were tested together with this one (Holm's m).
    #[serde(default = "one")]
    pub family: usize,
    pub verdict: Verdict,
}

fn nan() -> f64 {
    f64::NAN
}

fn one() -> usize {
    1
}

/// One metric's samples, to be compared in a family with [`compare_family`].
#[derive(Debug, Clone, Copy)]
pub struct Sides<'a> {
    /// The baseline's samples.
    pub a: &'a [f64],
    /// The candidate's samples.
    pub b: &'a [f64],
    pub better: Better,
    /// The bootstrap's seed.
    pub seed: u64,
}

/// Compares baseline `a` with candidate `b`: a change is `Better` or
/// `Worse` only when the Mann-Whitney p-value is below `alpha` AND the
/// whole confidence interval of the ratio lies beyond the noise threshold
/// (e.g. 0.05: a change under 5% is never a verdict). `Unclear` when either
/// side has fewer than 3 samples. One metric on its own: for several
/// compared at once, [`compare_family`].
pub fn compare(
    a: &[f64],
    b: &[f64],
    better: Better,
    alpha: f64,
    noise: f64,
    seed: u64,
) -> Comparison {
    let mut c = compare_family(&[Sides { a, b, better, seed }], alpha, noise);
    c.remove(0)
}

/// Compares several metrics of the same runs as one family: as
/// [`compare`], but each metric's p-value is adjusted by Holm's step-down
/// method (Holm 1979; R's `p.adjust(method = "holm")`), so the chance that
/// any metric of the family is called different when none is, is at most
/// `alpha` (the family-wise error rate), where testing each at `alpha`
/// would give up to `m x alpha`. Returns one comparison per input, in
/// order.
pub fn compare_family(items: &[Sides], alpha: f64, noise: f64) -> Vec<Comparison> {
    let raw: Vec<f64> = items
        .iter()
        .map(|s| mann_whitney(s.a, s.b).map_or(1.0, |(_, p)| p))
        .collect();
    let adjusted = holm(&raw);
    items
        .iter()
        .zip(raw.iter().zip(adjusted))
        .map(|(s, (&p_raw, p))| {
            let (ma, mb) = (median(s.a), median(s.b));
            let ratio = if ma != 0.0 { mb / ma } else { f64::NAN };
            let ci =
                bootstrap_ratio_ci(s.a, s.b, alpha, 2000, s.seed).unwrap_or((f64::NAN, f64::NAN));
            let verdict = if s.a.len() < 3 || s.b.len() < 3 || !ratio.is_finite() {
                Verdict::Unclear
            } else if p < alpha && ci.0 > 1.0 + noise {
                match s.better {
                    Better::Higher => Verdict::Better,
                    Better::Lower => Verdict::Worse,
                    Better::Neither => Verdict::Changed,
                }
            } else if p < alpha && ci.1 < 1.0 - noise {
                match s.better {
                    Better::Higher => Verdict::Worse,
                    Better::Lower => Verdict::Better,
                    Better::Neither => Verdict::Changed,
                }
            } else {
                Verdict::NoDifference
            };
            Comparison {
                median_a: ma,
                median_b: mb,
                ratio,
                ci_low: ci.0,
                ci_high: ci.1,
                p_value: p,
                p_raw,
                family: items.len(),
                verdict,
            }
        })
        .collect()
}

/// Holm's step-down adjustment of `ps`, in their order: sorted ascending,
/// the i-th smallest (from 0) becomes `(m - i) p`, raised to the largest
/// adjusted value before it, capped at 1.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| ps[i].total_cmp(&ps[j]));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// The smallest two-sided p-value [`mann_whitney`] can give for samples of
/// `n1` and `n2` without ties (one side wholly above the other): with 5
/// runs a side, 2 / C(10, 5) = 0.0079. No difference can be called at
/// `alpha` in a family of `m` when `m` times this is not below `alpha`.
pub fn smallest_p(n1: usize, n2: usize) -> f64 {
    let a: Vec<f64> = (0..n1).map(|i| i as f64).collect();
    let b: Vec<f64> = (n1..n1 + n2).map(|i| i as f64).collect();
    mann_whitney(&a, &b).map_or(1.0, |(_, p)| p)
}

/// The smallest p-value [`mann_whitney`] could give for these samples'
/// values, arranged most extremely: `a.len()` of them pooled lowest on one
/// side, or highest (with ties and unequal counts the two differ: a
/// throughput at its cap in 18 runs of history against 3 runs that
/// dropped). [`smallest_p`] when nothing ties, otherwise what the normal
/// approximation with ties gives (values repeat in a bucketed quantile or
/// a throughput at its cap; the result can be above or below).
pub fn smallest_p_of(a: &[f64], b: &[f64]) -> f64 {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let p = |x: &[f64], y: &[f64]| mann_whitney(x, y).map_or(1.0, |(_, p)| p);
    let (low, high) = pooled.split_at(a.len());
    let (below, above) = pooled.split_at(pooled.len() - a.len());
    p(low, high).min(p(above, below))
}

/// The smallest p-value any of a family's metrics could reach
/// ([`smallest_p_of`] of each `(baseline, candidate)`, the least): the
/// family can call nothing at `alpha` when `m` times it is not below.
pub fn family_floor<'s>(pairs: impl IntoIterator<Item = (&'s [f64], &'s [f64])>) -> f64 {
    pairs
        .into_iter()
        .map(|(a, b)| smallest_p_of(a, b))
        .fold(1.0, f64::min)
}

/// Whether samples `a` and `b`, in a family of `m`, could be called
/// different at `alpha` at all ([`smallest_p_of`] x m below `alpha`).
pub fn callable(a: &[f64], b: &[f64], m: usize, alpha: f64) -> bool {
    smallest_p_of(a, b) * (m as f64) < alpha
}

/// Why `na` against `nb` samples cannot call any of `m` metrics tested
/// together different at `alpha` (`p`: the smallest p-value their values
/// can give), and what to do: `more` is the option that sets the samples,
/// `needed` how many it takes (from [`runs_needed`]).
pub fn blind_note(
    (na, nb): (usize, usize),
    p: f64,
    m: usize,
    alpha: f64,
    (more, needed): (&str, Option<usize>),
) -> String {
    format!(
        "with {na} against {nb} samples no key metric can be called different: the smallest p-value their values can give is {p:.4}, and {m} key metric(s) tested together need one below {:.4} (alpha {alpha} / {m}); {}",
        alpha / m as f64,
        match needed {
            // Enough samples for values that do not repeat: these repeat.
            Some(n) if n <= nb => format!(
                "their values repeat (a quantile read from histogram buckets, a rate at its cap), which takes more than the {n} samples distinct values need: use {more} above {nb}"
            ),
            Some(n) => format!("use {more} {n} or more"),
            None => "use a larger --alpha".to_string(),
        }
    )
}

/// The fewest candidate samples with which a family of `m` metrics can
/// call a difference at `alpha` (see [`smallest_p`]) against `against`
/// baseline samples, or as many as the candidate's when None; None past
/// 50. For values that do not repeat (repeated values change the p-value
/// either way; see [`smallest_p_of`]).
pub fn runs_needed(m: usize, alpha: f64, against: Option<usize>) -> Option<usize> {
    (2..=50).find(|&n| smallest_p(against.unwrap_or(n), n) * (m as f64) < alpha)
}

/// True when more samples cannot change the verdict much: the interval is
/// inside the noise band (no difference), or wholly beyond it with a small
/// p-value (a difference).
pub fn settled(c: &Comparison, noise: f64) -> bool {
    match c.verdict {
        Verdict::Better | Verdict::Worse | Verdict::Changed => true,
        Verdict::NoDifference => c.ci_low >= 1.0 - noise && c.ci_high <= 1.0 + noise,
        Verdict::Unclear => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    /// Reference values from SciPy 1.17.1, computed independently with
    /// scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method=M).
    #[test]
    fn mann_whitney_matches_scipy() {
        let check = |a: &[f64], b: &[f64], u_ref: f64, p_ref: f64, tol: f64| {
            let (u, p) = mann_whitney(a, b).unwrap();
            assert_eq!(u, u_ref, "U of {a:?} vs {b:?}");
            assert!(
                close(p, p_ref, tol),
                "p of {a:?} vs {b:?}: {p}, SciPy {p_ref}"
            );
        };
        // method="exact"
        check(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[6.0, 7.0, 8.0, 9.0, 10.0],
            0.0,
            0.007_936_507_936_507_936,
            1e-12,
        );
        check(
            &[1.0, 4.0, 5.0, 8.0, 9.0],
            &[2.0, 3.0, 6.0, 7.0, 10.0],
            12.0,
            1.0,
            1e-12,
        );
        let a = [
            1.1, 2.2, 3.3, 4.4, 5.5, 6.6, 7.7, 8.8, 9.9, 10.1, 11.2, 12.3,
        ];
        let b = [
            3.5, 4.6, 8.1, 9.2, 13.4, 14.5, 15.6, 16.7, 17.8, 18.9, 19.1, 20.3,
        ];
        check(&a, &b, 26.0, 0.006_811_737_192_676_754, 1e-12);
        // method="asymptotic" (ties force it here: tie and continuity
        // corrections), and a sample too large for the exact method.
        check(
            &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0],
            &[3.0, 4.0, 4.0, 5.0, 5.0, 6.0],
            1.5,
            0.008_732_768_512_539_242,
            1e-7,
        );
        let a: Vec<f64> = (0..60).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 20.5).collect();
        check(&a, &b, 780.0, 8.747_567_722_893_498e-8, 1e-9);
        assert_eq!(mann_whitney(&[], &[1.0]), None);
    }

    /// SciPy 1.17.1: scipy.stats.bootstrap((a, b), median(y)/median(x),
    /// paired=False, method="percentile", n_resamples=50000) gave
    /// [1.14159, 1.28440] and [1.14159, 1.28302] with two seeds.
    #[test]
    fn bootstrap_matches_scipy() {
        let a: Vec<f64> = (0..25).map(|i| f64::from(100 + (i * 37) % 23)).collect();
        let b: Vec<f64> = (0..25).map(|i| f64::from(120 + (i * 41) % 29)).collect();
        let (lo, hi) = bootstrap_ratio_ci(&a, &b, 0.05, 50_000, 3).unwrap();
        assert!(
            close(lo, 1.141_59, 0.01) && close(hi, 1.2837, 0.01),
            "[{lo}, {hi}]"
        );
    }

    #[test]
    fn quantiles_match_numpy() {
        // numpy.quantile(x, q), its default (linear) method.
        let x = [10.0, 1.0, 4.0, 3.0, 2.0];
        assert_eq!(quantile(&x, 0.75), 4.0);
        assert_eq!(quantile(&x, 0.5), median(&x));
        assert!(close(quantile(&[1.0, 2.0, 3.0, 4.0], 0.75), 3.25, 1e-12));
        assert_eq!(quantile(&x, 1.0), 10.0);
        assert_eq!(quantile(&x, 0.0), 1.0);
        assert_eq!(quantile(&[7.0], 0.75), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    /// Throughput rounds that outside interference only ever slows: the
    /// upper quartiles recover a 5% loss where the medians, moved by how
    /// many rounds each side lost, do not.
    #[test]
    fn upper_quartiles_see_through_one_sided_interference() {
        let mut rng = Rng(9);
        let mut side = |rate: f64, n: usize, hit: usize| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    let jitter = 1.0 + ((rng.next() % 2001) as f64 - 1000.0) / 100_000.0;
                    // The first `hit` rounds lose 30% to 95% of their rate.
                    let slowed = if i < hit {
                        0.05 + 0.65 * (rng.next() % 1000) as f64 / 1000.0
                    } else {
                        1.0
                    };
                    rate * jitter * slowed
                })
                .collect()
        };
        let with = side(95.0, 30, 4);
        // As on a busy host: over half of one side's rounds hit.
        let without = side(100.0, 30, 16);
        let uq = 1.0 - quantile(&with, 0.75) / quantile(&without, 0.75);
        let med = 1.0 - median(&with) / median(&without);
        assert!((uq - 0.05).abs() < 0.015, "upper-quartile loss {uq}");
        assert!(med < -0.1, "the median loss {med} should be fooled here");
        let (lo, hi) = bootstrap_quantile_ratio_ci(&without, &with, 0.75, 0.05, 2000, 1).unwrap();
        assert!((lo..=hi).contains(&0.95) && hi < 1.0, "[{lo}, {hi}]");
    }

    #[test]
    fn normal_tail() {
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.959_963_985), 0.025, 1e-7));
        assert!(close(normal_sf(-1.0), 0.841_344_746, 1e-7));
    }

    #[test]
    fn bootstrap_interval_covers_the_true_ratio_and_is_reproducible() {
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = a.iter().map(|x| x * 1.5).collect();
        let ci = bootstrap_ratio_ci(&a, &b, 0.05, 2000, 1).unwrap();
        assert!(ci.0 <= 1.5 && ci.1 >= 1.5, "{ci:?}");
        assert!(ci.1 - ci.0 < 0.1, "{ci:?}");
        assert_eq!(ci, bootstrap_ratio_ci(&a, &b, 0.05, 2000, 1).unwrap());
    }

    #[test]
    fn verdicts_need_significance_and_a_change_beyond_the_noise() {
        let base: Vec<f64> = (0..10).map(|i| 10.0 + i as f64 * 0.1).collect();
        let slower: Vec<f64> = base.iter().map(|x| x * 2.0).collect();
        let c = compare(&base, &slower, Better::Lower, 0.05, 0.05, 7);
        assert_eq!(c.verdict, Verdict::Worse, "{c:?}");
        assert!(c.ci_low > 1.0);
        let c = compare(&base, &slower, Better::Higher, 0.05, 0.05, 7);
        assert_eq!(c.verdict, Verdict::Better);
        // 1% slower, significant but under the 5% noise threshold.
        let tiny: Vec<f64> = base.iter().map(|x| x * 1.01).collect();
        assert_eq!(
            compare(&base, &tiny, Better::Lower, 0.05, 0.05, 7).verdict,
            Verdict::NoDifference
        );
        assert_eq!(
            compare(&base[..2], &slower[..2], Better::Lower, 0.05, 0.05, 7).verdict,
            Verdict::Unclear
        );
    }

    /// A/A: samples from one distribution are called different at about the
    /// rate alpha (here: at most 2 x alpha over 400 comparisons, with no
    /// noise threshold to hide behind).
    #[test]
    fn a_a_comparisons_are_rarely_called_different() {
        let mut rng = Rng(42);
        let mut draw = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    // Sum of 4 uniforms: roughly normal, and with a tail.
                    (0..4).map(|_| (rng.next() % 10_000) as f64).sum::<f64>()
                })
                .collect()
        };
        let trials = 400;
        let mut different = 0;
        for i in 0..trials {
            let (a, b) = (draw(10), draw(10));
            if compare(&a, &b, Better::Lower, 0.05, 0.0, i).verdict != Verdict::NoDifference {
                different += 1;
            }
        }
        let rate = different as f64 / trials as f64;
        assert!(rate <= 0.10, "A/A called different {rate:.3} of the time");
    }

    /// Worked by hand as R's `p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2),
    /// method = "holm")` defines it: 5 x 0.005, 4 x 0.01, 3 x 0.03, then
    /// 2 x 0.04 = 0.08 raised to 0.09, and 0.2.
    #[test]
    fn holm_matches_r() {
        let got = holm(&[0.01, 0.04, 0.03, 0.005, 0.2]);
        let want = [0.04, 0.09, 0.09, 0.025, 0.2];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w, 1e-12), "{got:?}");
        }
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn the_smallest_p_value_and_the_runs_a_family_needs() {
        // 2 / C(10, 5) and 2 / C(16, 8), by counting.
        assert!(close(smallest_p(5, 5), 2.0 / 252.0, 1e-12));
        assert!(close(smallest_p(8, 8), 2.0 / 12870.0, 1e-12));
        // One metric at 0.05 needs 4 a side (2/70 = 0.029; 3 give 0.1);
        // three at 0.01 need 6 (3 x 2/924 = 0.0065; 3 x 2/252 = 0.024).
        assert_eq!(runs_needed(1, 0.05, None), Some(4));
        assert_eq!(runs_needed(3, 0.01, None), Some(6));
        // Against 20 nights of history, 3 more do for 3 metrics at 0.01
        // (3 x 2/1771), not for 9 (9 x 2/1771 = 0.0102).
        assert_eq!(runs_needed(3, 0.01, Some(20)), Some(3));
        assert_eq!(runs_needed(9, 0.01, Some(20)), Some(4));
        assert_eq!(runs_needed(3, 0.001, None), Some(8));
        // 8 a side where 8 suffice for distinct values: ties are why.
        let tied = blind_note((8, 8), 0.0009, 3, 0.001, ("--runs", Some(8)));
        assert!(
            tied.contains("their values repeat") && tied.contains("use --runs above 8"),
            "{tied}"
        );
        let short = blind_note((5, 5), 0.0079, 3, 0.001, ("--runs", Some(8)));
        assert!(short.ends_with("use --runs 8 or more"), "{short}");
        // Repeated values: 18 values of three kinds against 3 (the normal
        // approximation with ties, as SciPy's asymptotic method gives it).
        let a: Vec<f64> = (0..18).map(|i| (4 + i % 3) as f64).collect();
        assert!(close(
            smallest_p_of(&a, &[10.0, 11.0, 12.0]),
            0.005797,
            1e-6
        ));
        assert!(close(
            smallest_p_of(&[1.0, 2.0, 3.0, 4.0, 5.0], &[-1.0, -2.0, 3.5, 9.0, 0.0]),
            2.0 / 252.0,
            1e-12
        ));
        // A side at its cap: arranged highest, `a` is far more extreme
        // than arranged lowest (18 at 100 against 3 that dropped).
        let capped = [100.0; 18];
        let dropped = [50.0, 60.0, 70.0];
        let p = smallest_p_of(&capped, &dropped);
        assert_eq!(p, mann_whitney(&capped, &dropped).unwrap().1);
        assert!(p < 0.001, "{p}");
    }

    /// Six unrelated metrics, 5 runs a side, the same distribution: one of
    /// them sometimes lands wholly on one side (p = 0.0079 < 0.01 each
    /// time with probability 2/252), which a family of six at 0.01 must not
    /// call; a real shift in one of them is still called at 0.05.
    #[test]
    fn a_family_is_not_called_different_by_one_lucky_metric() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        let mixed = [1.5, 2.5, 3.5, 4.5, 5.5];
        let mut items = vec![Sides {
            a: &a,
            b: &b,
            better: Better::Lower,
            seed: 1,
        }];
        for s in 2..7 {
            items.push(Sides {
                a: &a,
                b: &mixed,
                better: Better::Lower,
                seed: s,
            });
        }
        let one = compare(&a, &b, Better::Lower, 0.01, 0.0, 1);
        assert_eq!(one.verdict, Verdict::Worse, "{one:?}");
        let fam = compare_family(&items, 0.01, 0.0);
        assert_eq!(fam[0].verdict, Verdict::NoDifference, "{:?}", fam[0]);
        assert_eq!((fam[0].family, fam[0].p_raw), (6, one.p_value));
        assert!(close(fam[0].p_value, 6.0 * 2.0 / 252.0, 1e-12));
        let fam = compare_family(&items[..3], 0.05, 0.0);
        assert_eq!(fam[0].verdict, Verdict::Worse, "{:?}", fam[0]);
    }
}
