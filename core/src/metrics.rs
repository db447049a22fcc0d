//! Prometheus metrics, kept in memory by this process and rendered as text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Millis;
use crate::store::{QueueStats, Store, StoreError};

/// Bucket bounds in seconds for latencies.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Counters {
    /// Intake answers by HTTP status.
    intake: BTreeMap<u16, u64>,
    /// Delivery outcomes by (provider, outcome).
    deliveries: BTreeMap<(String, &'static str), u64>,
    /// Time of each attempt, by provider.
    attempt_seconds: BTreeMap<String, Histogram>,
    /// Event accepted → delivered, by provider.
    delivery_latency: BTreeMap<String, Histogram>,
}

/// How long one reading of the queue serves every scrape: counting the deliveries table grows
/// with it, and anyone who can reach `/metrics` may ask as often as they like.
const QUEUE_REFRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    /// The last reading of the queue and when it was taken. Held while a reading is taken, so
    /// scrapes that arrive meanwhile wait for it instead of asking the database too.
    queue: tokio::sync::Mutex<Option<(Instant, Arc<QueueStats>)>>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        crate::lock(&self.counters)
    }

    pub fn intake(&self, status: u16) {
        *self.counters().intake.entry(status).or_default() += 1;
    }

    pub fn delivery(&self, provider: &str, outcome: &'static str, attempt: Option<Duration>) {
        let mut counters = self.counters();
        *counters
            .deliveries
            .entry((provider.to_string(), outcome))
            .or_default() += 1;
        if let Some(took) = attempt {
            counters
                .attempt_seconds
                .entry(provider.to_string())
                .or_default()
                .observe(took.as_secs_f64());
        }
    }

    pub fn delivered(&self, provider: &str, latency: Duration) {
        self.counters()
            .delivery_latency
            .entry(provider.to_string())
            .or_default()
            .observe(latency.as_secs_f64());
    }

    /// The queue's gauges, read from the database at most once per [`QUEUE_REFRESH`].
    pub async fn queue(&self, store: &Store, now: Millis) -> Result<Arc<QueueStats>, StoreError> {
        let mut last = self.queue.lock().await;
        if let Some((taken, stats)) = last.as_ref()
            && taken.elapsed() < QUEUE_REFRESH
        {
            return Ok(stats.clone());
        }
        let stats = Arc::new(store.queue_stats(now).await?);
        *last = Some((Instant::now(), stats.clone()));
        Ok(stats)
    }

    /// The Prometheus text exposition of everything, with the queue as last read.
    pub fn render(&self, queue: &QueueStats, now: Millis) -> String {
        let counters = self.counters();
        let mut out = String::new();
        out.push_str("# HELP pingpilot_events_total Event intake answers by HTTP status (200 accepted, others rejected).\n");
        out.push_str("# TYPE pingpilot_events_total counter\n");
        for (status, count) in &counters.intake {
            let result = if *status == 200 {
                "accepted"
            } else {
                "rejected"
            };
            let _ = writeln!(
                out,
                "pingpilot_events_total{{result=\"{result}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP pingpilot_deliveries_total Delivery outcomes by provider.\n");
        out.push_str("# TYPE pingpilot_deliveries_total counter\n");
        for ((provider, outcome), count) in &counters.deliveries {
            let _ = writeln!(
                out,
                "pingpilot_deliveries_total{{provider=\"{}\",outcome=\"{outcome}\"}} {count}",
                escape(provider)
            );
        }
        out.push_str(
            "# HELP pingpilot_delivery_attempt_duration_seconds Time of one delivery attempt.\n",
        );
        out.push_str("# TYPE pingpilot_delivery_attempt_duration_seconds histogram\n");
        for (provider, histogram) in &counters.attempt_seconds {
            let labels = format!("provider=\"{}\"", escape(provider));
            histogram.render(
                &mut out,
                "pingpilot_delivery_attempt_duration_seconds",
                &labels,
            );
        }
        out.push_str("# HELP pingpilot_delivery_latency_seconds Time from an event's acceptance to its delivery.\n");
        out.push_str("# TYPE pingpilot_delivery_latency_seconds histogram\n");
        for (provider, histogram) in &counters.delivery_latency {
            let labels = format!("provider=\"{}\"", escape(provider));
            histogram.render(&mut out, "pingpilot_delivery_latency_seconds", &labels);
        }
        out.push_str("# HELP pingpilot_queue_deliveries Deliveries in the database by state.\n");
        out.push_str("# TYPE pingpilot_queue_deliveries gauge\n");
        for (state, count) in &queue.by_state {
            let _ = writeln!(
                out,
                "pingpilot_queue_deliveries{{state=\"{}\"}} {count}",
                escape(state)
            );
        }
        out.push_str("# HELP pingpilot_queue_oldest_pending_age_seconds Age of the oldest delivery not final yet.\n");
        out.push_str("# TYPE pingpilot_queue_oldest_pending_age_seconds gauge\n");
        let age = queue
            .oldest_pending
            .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        let _ = writeln!(out, "pingpilot_queue_oldest_pending_age_seconds {age}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_queue() {
        let metrics = Metrics::default();
        metrics.intake(200);
        metrics.intake(200);
        metrics.intake(401);
        metrics.delivery("discord", "delivered", Some(Duration::from_millis(20)));
        metrics.delivered("discord", Duration::from_millis(300));
        let queue = QueueStats {
            by_state: vec![("due".into(), 3), ("failed".into(), 1)],
            oldest_pending: Some(1_000),
        };
        let text = metrics.render(&queue, 6_000);
        assert!(text.contains("pingpilot_events_total{result=\"accepted\",status=\"200\"} 2\n"));
        assert!(text.contains("pingpilot_events_total{result=\"rejected\",status=\"401\"} 1\n"));
        assert!(text.contains(
            "pingpilot_deliveries_total{provider=\"discord\",outcome=\"delivered\"} 1\n"
        ));
        assert!(text.contains("pingpilot_delivery_attempt_duration_seconds_bucket{provider=\"discord\",le=\"0.01\"} 0\n"));
        assert!(text.contains("pingpilot_delivery_attempt_duration_seconds_bucket{provider=\"discord\",le=\"0.025\"} 1\n"));
        assert!(
            text.contains("pingpilot_delivery_latency_seconds_count{provider=\"discord\"} 1\n")
        );
        assert!(text.contains("pingpilot_queue_deliveries{state=\"due\"} 3\n"));
        assert!(text.contains("pingpilot_queue_oldest_pending_age_seconds 5\n"));
    }
}
