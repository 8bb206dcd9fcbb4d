//! Metrics in the Prometheus text exposition format (version 0.0.4):
//! counters, gauges and histograms held in atomics, so the data path only
//! adds to a number, and the text made when `/metrics` is asked. Names are
//! prefixed `peerkit_`; counters end in `_total`; every family has its
//! `# HELP` and `# TYPE` lines; label values are escaped.
//!
//! Families are registered at start-up (`Registry::counter` and friends
//! hand back the atomic to keep); a gauge whose value lives elsewhere (the
//! ring's size) is a closure run at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Every metric name starts with this.
pub(crate) const PREFIX: &str = "peerkit_";

/// Buckets for request latencies, in seconds: 100 µs to 10 s.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// A number that only goes up.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into fixed buckets, with their sum and count.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One count per bound (not cumulative), then the `+Inf` one.
    counts: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts one observation of `v` (seconds, bytes, ...).
    pub(crate) fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// How many observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A counter kept in a field of `T`: its short name, its help, where it is.
pub(crate) type Field<T> = (&'static str, &'static str, fn(&T) -> &AtomicU64);

/// A gauge read at scrape time.
type ReadFn = Box<dyn Fn() -> f64 + Send + Sync>;

/// A counter read at scrape time.
type CountFn = Box<dyn Fn() -> u64 + Send + Sync>;

enum Value {
    Counter(Arc<Counter>),
    CounterFn(CountFn),
    GaugeFn(ReadFn),
    Histogram(Arc<Histogram>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Counter(_) | Value::CounterFn(_) => "counter",
            Value::GaugeFn(_) => "gauge",
            Value::Histogram(_) => "histogram",
        }
    }
}

/// One metric name: its help, its type, and a series per label set.
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    series: Vec<(String, Value)>,
}

/// The metrics of one daemon.
#[derive(Default)]
pub(crate) struct Registry {
    families: Mutex<Vec<Family>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// `{a="x",b="y"}` with the values escaped; empty without labels.
fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            debug_assert!(valid_name(k), "bad label name {k:?}");
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Registry {
    pub(crate) fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn add(&self, name: &str, help: &str, labels: &[(&str, &str)], value: Value) {
        let name = format!("{PREFIX}{name}");
        debug_assert!(valid_name(&name), "bad metric name {name:?}");
        debug_assert!(
            !matches!(value, Value::Counter(_) | Value::CounterFn(_)) || name.ends_with("_total"),
            "a counter's name ends in _total: {name}"
        );
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let series = (label_text(labels), value);
        match families.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                debug_assert_eq!(f.kind, series.1.kind(), "{name} registered as two types");
                f.series.push(series);
            }
            None => families.push(Family {
                name,
                help: help.to_string(),
                kind: series.1.kind(),
                series: vec![series],
            }),
        }
    }

    /// A counter `peerkit_NAME` (which ends in `_total`) with `labels`.
    pub(crate) fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        let c = Arc::new(Counter::default());
        self.add(name, help, labels, Value::Counter(c.clone()));
        c
    }

    /// A counter `peerkit_NAME` (ending in `_total`) whose value, kept
    /// elsewhere and only ever growing, `read` gives at scrape time.
    pub(crate) fn counter_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.add(name, help, labels, Value::CounterFn(Box::new(read)));
    }

    /// One counter per field of `owner`: `peerkit_{prefix}{name}_total`,
    /// read at scrape time from the atomic each `(name, help, field)`
    /// points to. For counters a system keeps anyway (a stats line).
    pub(crate) fn counter_fields<T: Send + Sync + 'static>(
        &self,
        owner: &Arc<T>,
        prefix: &str,
        fields: &[Field<T>],
    ) {
        for (name, help, field) in fields {
            let owner = owner.clone();
            let field = *field;
            self.counter_fn(&format!("{prefix}{name}_total"), help, &[], move || {
                field(&owner).load(Ordering::Relaxed)
            });
        }
    }

    /// A gauge `peerkit_NAME` whose value `read` gives at scrape time.
    pub(crate) fn gauge_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.add(name, help, labels, Value::GaugeFn(Box::new(read)));
    }

    /// A histogram `peerkit_NAME` with `labels` over `bounds` (ascending).
    pub(crate) fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Histogram> {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        let h = Arc::new(Histogram::new(bounds));
        self.add(name, help, labels, Value::Histogram(h.clone()));
        h
    }

    /// The exposition text of every family.
    pub(crate) fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for f in families.iter() {
            let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {} {help}", f.name);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, value) in &f.series {
                render_series(&mut out, &f.name, labels, value);
            }
        }
        out
    }
}

/// A float as the format writes it.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn render_series(out: &mut String, name: &str, labels: &str, value: &Value) {
    match value {
        Value::Counter(c) => {
            let _ = writeln!(out, "{name}{labels} {}", c.get());
        }
        Value::CounterFn(read) => {
            let _ = writeln!(out, "{name}{labels} {}", read());
        }
        Value::GaugeFn(read) => {
            let _ = writeln!(out, "{name}{labels} {}", num(read()));
        }
        Value::Histogram(h) => {
            // `le` joins the series' own labels.
            let with_le = |le: &str| match labels.strip_suffix('}') {
                Some(open) => format!("{open},le=\"{le}\"}}"),
                None => format!("{{le=\"{le}\"}}"),
            };
            let mut cumulative = 0;
            for (i, bound) in h.bounds.iter().enumerate() {
                cumulative += h.counts[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{} {cumulative}", with_le(&num(*bound)));
            }
            cumulative += h.counts[h.bounds.len()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{} {cumulative}", with_le("+Inf"));
            let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_sum{labels} {}", num(sum));
            let _ = writeln!(out, "{name}_count{labels} {cumulative}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_help_type_and_escaped_labels() {
        let r = Registry::new();
        let gets = r.counter("requests_total", "Requests served.", &[("kind", "get")]);
        let puts = r.counter(
            "requests_total",
            "Requests served.",
            &[("kind", "p\"u\\t\n")],
        );
        gets.add(3);
        puts.inc();
        r.gauge_fn("connections_open", "Connections open now.", &[], || -2.0);
        r.gauge_fn("ring_members", "Supernodes in the ring.", &[], || 7.0);
        let text = r.render();
        assert_eq!(
            text,
            "# HELP peerkit_requests_total Requests served.\n\
             # TYPE peerkit_requests_total counter\n\
             peerkit_requests_total{kind=\"get\"} 3\n\
             peerkit_requests_total{kind=\"p\\\"u\\\\t\\n\"} 1\n\
             # HELP peerkit_connections_open Connections open now.\n\
             # TYPE peerkit_connections_open gauge\n\
             peerkit_connections_open -2\n\
             # HELP peerkit_ring_members Supernodes in the ring.\n\
             # TYPE peerkit_ring_members gauge\n\
             peerkit_ring_members 7\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let r = Registry::new();
        let h = r.histogram(
            "request_seconds",
            "Request latency.",
            &[("kind", "get")],
            &[0.5, 1.0],
        );
        for v in [0.25, 0.5, 0.75, 2.0] {
            h.observe(v);
        }
        assert_eq!(h.count(), 4);
        let text = r.render();
        assert!(text.contains("# TYPE peerkit_request_seconds histogram\n"));
        assert!(text.contains("peerkit_request_seconds_bucket{kind=\"get\",le=\"0.5\"} 2\n"));
        assert!(text.contains("peerkit_request_seconds_bucket{kind=\"get\",le=\"1\"} 3\n"));
        assert!(text.contains("peerkit_request_seconds_bucket{kind=\"get\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("peerkit_request_seconds_sum{kind=\"get\"} 3.5\n"));
        assert!(text.contains("peerkit_request_seconds_count{kind=\"get\"} 4\n"));
        let bare = Registry::new();
        bare.histogram("x_seconds", "X.", &[], &[1.0]).observe(2.0);
        assert!(
            bare.render()
                .contains("peerkit_x_seconds_bucket{le=\"+Inf\"} 1\n")
        );
    }
}
