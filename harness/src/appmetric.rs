//! Application metrics (issue 18): what a scenario declares a real program
//! reports, where in its output each number is, and reading it. Pure: the
//! text in, a number or an error for the person who wrote the rule out.
//!
//! A rule that does not match is an error naming the metric, the rule and
//! the output's last lines, never a silent zero.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One number a program reports, as a scenario declares it:
/// `{ name: time, from: { pattern: 'Time: ([0-9.]+)' }, unit: s, better: lower }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppMetric {
    /// Lower-case letters, digits and `_`, unique in the group: how
    /// results, `compare` and `history` name it (`app.GROUP.NAME`).
    pub name: String,
    /// Where the number is: `{ pattern: ... }`, `{ json: ... }`,
    /// `{ yaml: ... }` or `wall_time`.
    #[serde(with = "serde_yaml::with::singleton_map")]
    #[schemars(with = "Source")]
    pub from: Source,
    /// Its unit as people read it (`s`, `ms`, `ops/s`, `req/s`): shown, not
    /// converted.
    pub unit: String,
    /// Which way is better: `lower` or `higher`.
    pub better: Direction,
}

/// Which way is better for an application metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Lower,
    Higher,
}

impl From<Direction> for crate::stats::Better {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Lower => crate::stats::Better::Lower,
            Direction::Higher => crate::stats::Better::Higher,
        }
    }
}

/// Where in a program's output a metric is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A regular expression (Rust `regex` syntax) over the output, stdout
    /// and stderr together: the first capture group of its last match,
    /// which must be a number (`Time: ([0-9.]+)`).
    Pattern(String),
    /// A path into the output read as one JSON document: keys separated by
    /// `.`, list items as `[N]` (`results[0].tps`); the value must be a
    /// number or a string holding one.
    Json(String),
    /// The same path into the output read as one YAML document (stress-ng
    /// `--yaml`).
    Yaml(String),
    /// A quantile of a histogram in the output read as one JSON document:
    /// at `path` a map from value to count (cyclictest `--json`:
    /// `thread.0.histogram`, latency in us to cycles), `quantile` from 0 to
    /// 1 (the smallest value with at least that fraction of the counts at
    /// or below it).
    JsonHistogram { path: String, quantile: f64 },
    /// The program's wall time from start to exit, in seconds.
    WallTime,
}

/// A path step: a key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` as steps; an error says what is wrong with it.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && rest.is_empty() {
            return Err(format!("path {path:?}: an empty key"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("path {path:?}: a `[` without `]`"))?;
            let n = rest[1..close]
                .parse::<usize>()
                .map_err(|_| format!("path {path:?}: {:?} is not a list index", &rest[1..close]))?;
            steps.push(Step::Index(n));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("path {path:?}: text after `]` without a `.`"));
            }
        }
    }
    Ok(steps)
}

impl AppMetric {
    /// Checks the declaration without any output: the name, a pattern that
    /// compiles with a capture group, a path that parses.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "metric {:?}: a name of lower-case letters, digits and _",
                self.name
            ));
        }
        match &self.from {
            Source::Pattern(p) => {
                let re = regex::Regex::new(p)
                    .map_err(|e| format!("metric {}: pattern {p:?}: {e}", self.name))?;
                if re.captures_len() < 2 {
                    return Err(format!(
                        "metric {}: pattern {p:?} has no capture group\n  fix: put the number in parentheses, e.g. 'Time: ([0-9.]+)'",
                        self.name
                    ));
                }
            }
            Source::Json(p) | Source::Yaml(p) => {
                parse_path(p).map_err(|e| format!("metric {}: {e}", self.name))?;
            }
            Source::JsonHistogram { path, quantile } => {
                parse_path(path).map_err(|e| format!("metric {}: {e}", self.name))?;
                if !(0.0..=1.0).contains(quantile) {
                    return Err(format!(
                        "metric {}: quantile {quantile} is not between 0 and 1\n  fix: 0.99 for p99",
                        self.name
                    ));
                }
            }
            Source::WallTime => {}
        }
        Ok(())
    }

    /// The metric's value from a program's `output` and `wall` time.
    ///
    /// Errors: the rule did not match, the path leads nowhere or to
    /// something that is not a number; each names the metric, the rule
    /// and the output's last lines.
    pub fn read(&self, output: &str, wall: Option<Duration>) -> Result<f64, String> {
        let fail = |why: String| -> String {
            format!(
                "metric {}: {why}; the output's last lines:\n{}",
                self.name,
                tail(output, 10)
            )
        };
        match &self.from {
            Source::WallTime => wall.map(|w| w.as_secs_f64()).ok_or_else(|| {
                format!(
                    "metric {}: the program's wall time is unknown (it did not exit by itself)",
                    self.name
                )
            }),
            Source::Pattern(p) => {
                let re = regex::Regex::new(p).map_err(|e| format!("metric {}: {e}", self.name))?;
                let caps = re
                    .captures_iter(output)
                    .last()
                    .ok_or_else(|| fail(format!("pattern {p:?} matched nothing")))?;
                let text = caps.get(1).map_or("", |m| m.as_str());
                number(text)
                    .ok_or_else(|| fail(format!("pattern {p:?} captured {text:?}, not a number")))
            }
            Source::Json(p) => {
                let v: serde_json::Value = serde_json::from_str(output)
                    .map_err(|e| fail(format!("the output is not JSON ({e})")))?;
                let v: serde_yaml::Value =
                    serde_yaml::to_value(v).map_err(|e| fail(format!("the output's JSON: {e}")))?;
                follow(&v, p).map_err(fail)
            }
            Source::Yaml(p) => {
                let v: serde_yaml::Value = serde_yaml::from_str(output)
                    .map_err(|e| fail(format!("the output is not YAML ({e})")))?;
                follow(&v, p).map_err(fail)
            }
            Source::JsonHistogram { path, quantile } => {
                let v: serde_yaml::Value = serde_json::from_str::<serde_json::Value>(output)
                    .map_err(|e| fail(format!("the output is not JSON ({e})")))
                    .and_then(|v| {
                        serde_yaml::to_value(v).map_err(|e| fail(format!("the output's JSON: {e}")))
                    })?;
                let at = walk(&v, path).map_err(fail)?;
                histogram_quantile(at, *quantile)
                    .map_err(|why| fail(format!("path {path:?}: {why}")))
            }
        }
    }
}

/// A number, allowing thousands separators' absence only (`1234.5`,
/// `1e3`); `nan` and infinities are not numbers here.
fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The quantile `q` of a map from value to count.
fn histogram_quantile(h: &serde_yaml::Value, q: f64) -> Result<f64, String> {
    let map = h
        .as_mapping()
        .ok_or_else(|| format!("{} is not a map from value to count", short(h)))?;
    let mut bins = Vec::with_capacity(map.len());
    for (k, c) in map {
        let value = match k {
            serde_yaml::Value::String(s) => number(s),
            serde_yaml::Value::Number(n) => n.as_f64(),
            _ => None,
        };
        let count = c.as_u64();
        match (value, count) {
            (Some(v), Some(c)) => bins.push((v, c)),
            _ => return Err(format!("the entry {} is not a value and a count", short(k))),
        }
    }
    bins.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = bins.iter().map(|b| b.1).sum();
    if total == 0 {
        return Err("the histogram is empty".into());
    }
    let want = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (v, c) in &bins {
        seen += c;
        if seen >= want {
            return Ok(*v);
        }
    }
    Ok(bins.last().map_or(0.0, |b| b.0))
}

/// The number at `path` in `v`.
fn follow(v: &serde_yaml::Value, path: &str) -> Result<f64, String> {
    let at = walk(v, path)?;
    match at {
        serde_yaml::Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        serde_yaml::Value::String(s) => number(s),
        _ => None,
    }
    .ok_or_else(|| format!("path {path:?} leads to {}, not a number", short(at)))
}

/// What is at `path` in `v`.
fn walk<'v>(v: &'v serde_yaml::Value, path: &str) -> Result<&'v serde_yaml::Value, String> {
    let steps = parse_path(path)?;
    let mut at = v;
    let mut walked = String::new();
    for s in &steps {
        let next = match s {
            Step::Key(k) => at.get(k.as_str()),
            Step::Index(i) => at.get(*i),
        };
        match s {
            Step::Key(k) if !walked.is_empty() => walked.push_str(&format!(".{k}")),
            Step::Key(k) => walked.push_str(k),
            Step::Index(i) => walked.push_str(&format!("[{i}]")),
        }
        at = next.ok_or_else(|| format!("path {path:?}: nothing at {walked}"))?;
    }
    Ok(at)
}

fn short(v: &serde_yaml::Value) -> String {
    let s = serde_yaml::to_string(v).unwrap_or_default();
    let s = s.trim();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The last `n` lines of `text`, indented, or a note that it is empty.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "    (no output)".into();
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(yaml: &str) -> AppMetric {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_pattern_takes_the_last_match_and_a_miss_shows_the_output() {
        // hackbench's last line.
        let m =
            metric("{ name: time, from: { pattern: 'Time: ([0-9.]+)' }, unit: s, better: lower }");
        m.validate().unwrap();
        let out = "Running in process mode with 4 groups\nTime: 0.950\nTime: 1.250\n";
        assert_eq!(m.read(out, None).unwrap(), 1.25);
        let e = m.read("Segmentation fault\n", None).unwrap_err();
        assert!(
            e.contains("metric time: pattern \"Time: ([0-9.]+)\" matched nothing"),
            "{e}"
        );
        assert!(e.contains("    Segmentation fault"), "{e}");
        let e = m.read("Time: .\n", None).unwrap_err();
        assert!(e.contains("captured \".\", not a number"), "{e}");
        let no_group =
            metric("{ name: t, from: { pattern: 'Time: [0-9.]+' }, unit: s, better: lower }");
        assert!(no_group
            .validate()
            .unwrap_err()
            .contains("no capture group"));
        let bad =
            metric("{ name: t, from: { pattern: 'Time: ([0-9.]+' }, unit: s, better: lower }");
        assert!(bad.validate().unwrap_err().contains("pattern"));
    }

    #[test]
    fn json_and_yaml_paths_find_numbers_and_say_where_they_stop() {
        let m =
            metric("{ name: tps, from: { json: 'results[1].tps' }, unit: tx/s, better: higher }");
        m.validate().unwrap();
        let out = r#"{"results": [{"tps": 1}, {"tps": "2034.5"}]}"#;
        assert_eq!(m.read(out, None).unwrap(), 2034.5);
        let e = m.read(r#"{"results": [{"tps": 1}]}"#, None).unwrap_err();
        assert!(e.contains("nothing at results[1]"), "{e}");
        let e = m.read("not json", None).unwrap_err();
        assert!(e.contains("the output is not JSON"), "{e}");
        // stress-ng --yaml's shape.
        let y = metric("{ name: cpu_ops, from: { yaml: 'metrics[0].bogo-ops-per-second-real-time' }, unit: ops/s, better: higher }");
        let out = "system-info:\n  hostname: g\nmetrics:\n  - stressor: cpu\n    bogo-ops: 1200\n    bogo-ops-per-second-real-time: 399.8\n";
        assert_eq!(y.read(out, None).unwrap(), 399.8);
        let e = metric("{ name: x, from: { yaml: 'system-info' }, unit: s, better: lower }")
            .read(out, None)
            .unwrap_err();
        assert!(e.contains("leads to hostname: g, not a number"), "{e}");
        for (path, says) in [
            ("a..b", "an empty key"),
            ("a[x]", "not a list index"),
            ("a[1", "without `]`"),
            ("a[1]b", "text after `]`"),
        ] {
            let m = AppMetric {
                from: Source::Json(path.into()),
                ..m.clone()
            };
            assert!(m.validate().unwrap_err().contains(says), "{path}");
        }
    }

    #[test]
    fn a_histogram_quantile_is_read_from_cyclictest_json() {
        let m = metric("{ name: p99, from: { json_histogram: { path: thread.0.histogram, quantile: 0.99 } }, unit: us, better: lower }");
        m.validate().unwrap();
        // cyclictest --json's shape: latency (us) to cycles, 100 in all.
        let out = r#"{"thread": {"0": {"histogram": {"13": 50, "20": 48, "54": 1, "120": 1}, "max": 120}}}"#;
        assert_eq!(m.read(out, None).unwrap(), 54.0);
        let p50 = AppMetric {
            from: Source::JsonHistogram {
                path: "thread.0.histogram".into(),
                quantile: 0.5,
            },
            ..m.clone()
        };
        assert_eq!(p50.read(out, None).unwrap(), 13.0);
        let e = m
            .read(r#"{"thread": {"0": {"histogram": {}}}}"#, None)
            .unwrap_err();
        assert!(e.contains("the histogram is empty"), "{e}");
        let e = m
            .read(r#"{"thread": {"0": {"histogram": 3}}}"#, None)
            .unwrap_err();
        assert!(e.contains("not a map from value to count"), "{e}");
        let bad = AppMetric {
            from: Source::JsonHistogram {
                path: "h".into(),
                quantile: 99.0,
            },
            ..m
        };
        assert!(bad.validate().unwrap_err().contains("fix: 0.99 for p99"));
    }

    #[test]
    fn wall_time_and_names() {
        let m = metric("{ name: build, from: wall_time, unit: s, better: lower }");
        assert_eq!(m.read("", Some(Duration::from_millis(1500))).unwrap(), 1.5);
        assert!(m
            .read("", None)
            .unwrap_err()
            .contains("did not exit by itself"));
        let bad = AppMetric {
            name: "Build-Time".into(),
            ..m
        };
        assert!(bad.validate().unwrap_err().contains("lower-case letters"));
        assert_eq!(
            crate::stats::Better::from(Direction::Higher),
            crate::stats::Better::Higher
        );
    }
}
