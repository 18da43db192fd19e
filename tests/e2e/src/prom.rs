//! A parser for the Prometheus text exposition format (version 0.0.4), enough to read
//! the services' `/metrics`: samples with labels, `# TYPE` lines, escapes in label
//! values, `+Inf`/`NaN`, optional timestamps.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name including any `_bucket`/`_sum`/`_count` suffix.
    pub name: String,
    /// Label pairs, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parse error with the line it happened on.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("metrics line {line}: {message}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The offending line.
    pub text: String,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Every sample in order of appearance.
    pub samples: Vec<Sample>,
    /// Declared types from `# TYPE name type`.
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses a whole `/metrics` body.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut metrics = Metrics::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |message: &str| ParseError {
                line: index + 1,
                message: message.to_string(),
                text: raw.to_string(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut parts = comment.split_whitespace();
                if parts.next() == Some("TYPE") {
                    let name = parts.next().ok_or_else(|| err("TYPE without a name"))?;
                    let kind = parts.next().ok_or_else(|| err("TYPE without a type"))?;
                    metrics.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            metrics
                .samples
                .push(parse_sample(line).map_err(|m| err(&m))?);
        }
        Ok(metrics)
    }

    /// True when any sample of the metric family `name` exists (including histogram
    /// `_bucket`/`_sum`/`_count` series) or a `# TYPE` declares it.
    pub fn has_family(&self, name: &str) -> bool {
        self.types.contains_key(name)
            || self.samples.iter().any(|s| {
                s.name == name
                    || s.name.strip_prefix(name).is_some_and(|rest| {
                        matches!(rest, "_bucket" | "_sum" | "_count" | "_total")
                    })
            })
    }

    /// Samples named exactly `name` whose labels include every pair in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the values of [`Metrics::find`] (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }

    /// A histogram's observations and the upper bound of the smallest bucket that holds
    /// all of them (`None` when it has no observation or no finite bucket holds them all).
    pub fn histogram_bound(&self, name: &str) -> (f64, Option<f64>) {
        let count = self.sum(&format!("{name}_count"), &[]);
        let bucket = format!("{name}_bucket");
        let bound = self
            .samples
            .iter()
            .filter(|s| s.name == bucket && s.value >= count && count > 0.0)
            .filter_map(|s| s.labels.get("le")?.parse::<f64>().ok())
            .filter(|le| le.is_finite())
            .min_by(f64::total_cmp);
        (count, bound)
    }

    /// Checks that a histogram of counts (`sts_stream_busy_slots`) saw at least
    /// `min_observations` values, none above `limit`, and `limit` itself reached (the
    /// limit was tested, not just never approached).
    pub fn check_limit_kept(
        &self,
        name: &str,
        limit: f64,
        min_observations: f64,
    ) -> Result<(), String> {
        let (count, bound) = self.histogram_bound(name);
        if count < min_observations {
            return Err(format!(
                "{name}: {count} observations, expected at least {min_observations}"
            ));
        }
        let below = self
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .filter(|s| {
                s.labels
                    .get("le")
                    .and_then(|l| l.parse::<f64>().ok())
                    .is_some_and(|le| le < limit)
            })
            .map(|s| s.value)
            .fold(0.0, f64::max);
        match bound {
            Some(b) if b <= limit && below < count => Ok(()),
            Some(b) if b <= limit => Err(format!(
                "{name}: all {count} observations below {limit}: the limit was never reached"
            )),
            _ => Err(format!(
                "{name}: observations above {limit} (smallest bucket holding all {count}: {bound:?})"
            )),
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("a sample needs a value")?;
    let value = parse_value(value_text).ok_or_else(|| format!("bad value {value_text:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        text = text[eq + 1..].trim_start();
        text = text.strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => return Err(format!("bad escape \\{other}")),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        text = text[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# HELP worker_audio_fragments_total Audio fragments by outcome.
# TYPE worker_audio_fragments_total counter
worker_audio_fragments_total{status="processed",stream="a"} 5
worker_audio_fragments_total{status="fallback",stream="a"} 1
worker_audio_fragments_total{stream="b",status="fallback"} 2
# TYPE worker_av_sync_delta_ms gauge
worker_av_sync_delta_ms{stream="a"} -21.5
# TYPE rt_seconds histogram
rt_seconds_bucket{le="0.5"} 3
rt_seconds_bucket{le="+Inf"} 4 1700000000000
rt_seconds_sum 2.5
rt_seconds_count 4
weird{path="a\"b\\c\nd", x = "1" ,} NaN
"#;

    #[test]
    fn a_histogram_shows_a_limit_kept_or_broken() {
        let text = |b1: u32, b2: u32, b3: u32, count: u32| {
            format!(
                "# TYPE x histogram\nx_bucket{{le=\"1\"}} {b1}\nx_bucket{{le=\"2\"}} {b2}\nx_bucket{{le=\"3\"}} {b3}\nx_bucket{{le=\"+Inf\"}} {count}\nx_sum 0\nx_count {count}\n"
            )
        };
        let kept = Metrics::parse(&text(2, 5, 5, 5)).unwrap();
        assert_eq!(kept.histogram_bound("x"), (5.0, Some(2.0)));
        assert!(kept.check_limit_kept("x", 2.0, 3.0).is_ok());
        // One fragment started while 3 of the stream's slots were busy: limit broken.
        let broken = Metrics::parse(&text(2, 4, 5, 5)).unwrap();
        assert!(broken
            .check_limit_kept("x", 2.0, 3.0)
            .unwrap_err()
            .contains("above 2"));
        // Never more than one at once: the limit was not exercised.
        let idle = Metrics::parse(&text(5, 5, 5, 5)).unwrap();
        assert!(idle
            .check_limit_kept("x", 2.0, 3.0)
            .unwrap_err()
            .contains("never reached"));
        // Nothing observed proves nothing.
        let none = Metrics::parse(&text(0, 0, 0, 0)).unwrap();
        assert!(none
            .check_limit_kept("x", 2.0, 1.0)
            .unwrap_err()
            .contains("0 observations"));
        let beyond = Metrics::parse(&text(0, 0, 0, 4)).unwrap();
        assert_eq!(beyond.histogram_bound("x"), (4.0, None));
    }

    #[test]
    fn parses_labels_values_types() {
        let m = Metrics::parse(BODY).unwrap();
        assert_eq!(m.samples.len(), 9);
        assert_eq!(m.types["worker_audio_fragments_total"], "counter");
        assert_eq!(
            m.sum("worker_audio_fragments_total", &[("status", "fallback")]),
            3.0
        );
        assert_eq!(
            m.sum(
                "worker_audio_fragments_total",
                &[("status", "processed"), ("stream", "a")]
            ),
            5.0
        );
        assert_eq!(
            m.sum("worker_audio_fragments_total", &[("status", "failed")]),
            0.0
        );
        assert_eq!(m.sum("worker_av_sync_delta_ms", &[]), -21.5);
        assert_eq!(
            m.find("rt_seconds_bucket", &[("le", "+Inf")])
                .next()
                .unwrap()
                .value,
            4.0
        );
        let weird = m.find("weird", &[]).next().unwrap();
        assert_eq!(weird.labels["path"], "a\"b\\c\nd");
        assert_eq!(weird.labels["x"], "1");
        assert!(weird.value.is_nan());
        assert!(m.has_family("rt_seconds"));
        assert!(m.has_family("worker_av_sync_delta_ms"));
        assert!(!m.has_family("rt"));
    }

    #[test]
    fn rejects_malformed_lines_with_line_numbers() {
        let err = Metrics::parse("ok 1\nbad{x=\"1\" 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(Metrics::parse("novalue\n").is_err());
        assert!(Metrics::parse("x{a=1} 1\n").is_err());
        assert!(Metrics::parse("x 1 2 3\n").is_err());
        assert!(Metrics::parse("x abc\n").is_err());
        assert!(Metrics::parse("9x 1\n").is_err());
        assert!(Metrics::parse("x{a=\"\\q\"} 1\n").is_err());
    }

    #[test]
    fn empty_body_is_empty() {
        let m = Metrics::parse("").unwrap();
        assert!(m.samples.is_empty());
        assert!(!m.has_family("anything"));
    }
}
