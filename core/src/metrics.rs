//! Prometheus metrics, kept in memory by this process and rendered as text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Millis;
use crate::store::{QueueStats, Removed, Store, StoreError};

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
    /// Rows the retention task deleted in this process.
    retention: Removed,
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

    /// Rows deleted by the retention task.
    pub fn retention(&self, removed: Removed) {
        self.counters().retention.add(removed);
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
        out.push_str("# HELP pingpilot_retention_deleted_rows_total Rows deleted by retention.events in this process, by table.\n");
        out.push_str("# TYPE pingpilot_retention_deleted_rows_total counter\n");
        let removed = counters.retention;
        for (table, rows) in [
            ("events", removed.events),
            ("deliveries", removed.deliveries),
            ("delivery_attempts", removed.attempts),
        ] {
            let _ = writeln!(
                out,
                "pingpilot_retention_deleted_rows_total{{table=\"{table}\"}} {rows}"
            );
        }
        out.push_str("# HELP pingpilot_build_info The running build.\n");
        out.push_str("# TYPE pingpilot_build_info gauge\n");
        let _ = writeln!(
            out,
            "pingpilot_build_info{{version=\"{}\"}} 1",
            escape(crate::app::VERSION)
        );
        if let Some(process) = ProcessFigures::read() {
            process.render(&mut out);
        }
        out
    }
}

/// This process's figures under Prometheus's standard names, read from `/proc` (Linux only).
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    start_time_seconds: f64,
    open_fds: usize,
    max_fds: Option<u64>,
}

impl ProcessFigures {
    #[cfg(target_os = "linux")]
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name is in parentheses and may hold anything: count from after it.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        // Fields 3.. of proc(5), so field n is at n - 3.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("btime "))
                    .and_then(|secs| secs.trim().parse::<f64>().ok())
            })?;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
            .then_some(limit.rlim_cur);
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            resident_bytes: field(24)? * page,
            start_time_seconds: boot + field(22)? as f64 / ticks,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count(),
            max_fds,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<Self> {
        None
    }

    fn render(&self, out: &mut String) {
        let mut figure = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        figure(
            "process_cpu_seconds_total",
            "counter",
            "CPU time used by the process, user and system.",
            self.cpu_seconds.to_string(),
        );
        figure(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            self.resident_bytes.to_string(),
        );
        figure(
            "process_start_time_seconds",
            "gauge",
            "When the process started, in Unix seconds.",
            self.start_time_seconds.to_string(),
        );
        figure(
            "process_open_fds",
            "gauge",
            "Open file descriptors (connections, database files).",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            figure(
                "process_max_fds",
                "gauge",
                "The process's open-file limit.",
                max.to_string(),
            );
        }
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
        assert!(text.contains(&format!(
            "pingpilot_build_info{{version=\"{}\"}} 1\n",
            crate::app::VERSION
        )));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_are_read_from_proc() {
        let figures = ProcessFigures::read().expect("/proc");
        assert!(
            figures.resident_bytes > 1_000_000,
            "{}",
            figures.resident_bytes
        );
        assert!(figures.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let started = figures.start_time_seconds;
        assert!(
            started <= now + 1.0 && started > now - 24.0 * 3600.0,
            "{started} vs {now}"
        );
        let mut out = String::new();
        figures.render(&mut out);
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ")
        );
        assert!(out.contains("\nprocess_open_fds "));
    }
}
