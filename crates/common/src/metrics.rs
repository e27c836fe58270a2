//! Counters and gauges of a node, collected from each component on demand and rendered by the
//! edges: `GET /metrics` (Prometheus text format) and the `system.metrics` SQL table.
//!
//! Components keep their own atomics; a [`MetricsSource`] turns them into [`Metric`] samples
//! when asked, so nothing is copied on the hot path. A node holds one [`MetricsRegistry`].

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Whether a value only grows (since start) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One sample: `name{labels} value`. Names follow Prometheus rules (`[a-z_][a-z0-9_]*`,
/// counters end in `_total`) and start with `minitrue_`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Metric {
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Metric {
        Metric { name, help, kind: MetricKind::Counter, labels: Vec::new(), value: value as f64 }
    }

    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Metric {
        Metric { name, help, kind: MetricKind::Gauge, labels: Vec::new(), value }
    }

    pub fn with_label(mut self, key: &'static str, value: impl Into<String>) -> Metric {
        self.labels.push((key, value.into()));
        self
    }

    /// `key="value",…` with Prometheus escaping (backslash, quote, newline).
    pub fn labels_text(&self) -> String {
        let mut text = String::new();
        for (i, (key, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(text, "{key}=\"{escaped}\"");
        }
        text
    }
}

/// A component that reports metrics.
pub trait MetricsSource: Send + Sync {
    /// Appends the component's current samples to `out`.
    fn collect(&self, out: &mut Vec<Metric>);
}

impl<F: Fn(&mut Vec<Metric>) + Send + Sync> MetricsSource for F {
    fn collect(&self, out: &mut Vec<Metric>) {
        self(out)
    }
}

/// The sources of one node. Cheap to clone (shared list); sources can be added after the
/// registry was handed out (e.g. the MQTT subscriber starts after the SQL session).
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    sources: Arc<Mutex<Vec<Arc<dyn MetricsSource>>>>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("sources", &self.sources.lock().unwrap_or_else(PoisonError::into_inner).len())
            .finish()
    }
}

impl MetricsRegistry {
    pub fn new() -> MetricsRegistry {
        MetricsRegistry::default()
    }

    pub fn register(&self, source: Arc<dyn MetricsSource>) {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner).push(source);
    }

    /// Every source's samples, in registration order.
    pub fn collect(&self) -> Vec<Metric> {
        let sources: Vec<_> = self.sources.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut out = Vec::new();
        for source in sources {
            source.collect(&mut out);
        }
        out
    }

    /// The Prometheus text exposition format (version 0.0.4): one `# HELP`/`# TYPE` pair per
    /// metric name, samples of the same name grouped under it.
    pub fn render_prometheus(&self) -> String {
        render_prometheus(&self.collect())
    }
}

/// Renders samples in the Prometheus text format; samples sharing a name are grouped.
pub fn render_prometheus(metrics: &[Metric]) -> String {
    let mut names: Vec<&'static str> = Vec::new();
    for metric in metrics {
        if !names.contains(&metric.name) {
            names.push(metric.name);
        }
    }
    let mut text = String::new();
    for name in names {
        let mut samples = metrics.iter().filter(|m| m.name == name).peekable();
        let Some(first) = samples.peek() else { continue };
        let _ = writeln!(text, "# HELP {name} {}", first.help);
        let _ = writeln!(text, "# TYPE {name} {}", first.kind.as_str());
        for sample in samples {
            let value = if sample.value.is_finite() {
                format!("{}", sample.value)
            } else if sample.value.is_nan() {
                "NaN".to_string()
            } else if sample.value > 0.0 {
                "+Inf".to_string()
            } else {
                "-Inf".to_string()
            };
            if sample.labels.is_empty() {
                let _ = writeln!(text, "{name} {value}");
            } else {
                let _ = writeln!(text, "{name}{{{}}} {value}", sample.labels_text());
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_grouped_samples_with_escaped_labels() {
        let registry = MetricsRegistry::new();
        registry.register(Arc::new(|out: &mut Vec<Metric>| {
            out.push(
                Metric::counter("minitrue_points_total", "Points.", 3).with_label("door", "mqtt"),
            );
            out.push(Metric::gauge("minitrue_series", "Series.", 2.5));
            out.push(
                Metric::counter("minitrue_points_total", "Points.", 4)
                    .with_label("door", "a\"b\\c\nd"),
            );
        }));
        assert_eq!(
            registry.render_prometheus(),
            "# HELP minitrue_points_total Points.\n# TYPE minitrue_points_total counter\n\
             minitrue_points_total{door=\"mqtt\"} 3\n\
             minitrue_points_total{door=\"a\\\"b\\\\c\\nd\"} 4\n\
             # HELP minitrue_series Series.\n# TYPE minitrue_series gauge\nminitrue_series 2.5\n"
        );
    }

    #[test]
    fn sources_added_later_are_seen_by_earlier_clones() {
        let registry = MetricsRegistry::new();
        let handed_out = registry.clone();
        registry.register(Arc::new(|out: &mut Vec<Metric>| {
            out.push(Metric::gauge("minitrue_up", "Up.", 1.0));
        }));
        assert_eq!(handed_out.collect().len(), 1);
        assert_eq!(
            render_prometheus(&[Metric::gauge("minitrue_x", "X.", f64::INFINITY)]),
            "# HELP minitrue_x X.\n# TYPE minitrue_x gauge\nminitrue_x +Inf\n"
        );
    }
}
