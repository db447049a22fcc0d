//! How retention holds the database: seeds events past retention (each with a delivered
//! delivery and its attempt), then deletes them batch by batch while intake-like writes go on,
//! and prints each batch's time and the writes' latency before and during.
//!
//! cargo run --release --example retention -- [EVENTS] [BATCH] [DATABASE_URL]
//!
//! EVENTS defaults to 100000, BATCH (retention.batch) to 500; DATABASE_URL to a SQLite file in a new temporary directory (a
//! PostgreSQL URL names an existing, empty database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingpilot::core::config::RetentionSettings;
use pingpilot::core::model::{Account, Category, Millis, now_millis};
use pingpilot::core::service::retention;
use pingpilot::core::store::{
    AttemptLog, CategoryCreate, DeliveryUpdate, IntakeResult, NewEvent, Store, StoreOptions,
};
use serde_json::Map;

const DAY_MS: Millis = 86_400_000;
/// Writers adding new events meanwhile, as intake would.
const WRITERS: usize = 8;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(100_000, |n| n.parse().expect("EVENTS"));
    let batch: u32 = args.next().map_or(500, |n| n.parse().expect("BATCH"));
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("retention.db").display()));
    let store = pingpilot::core::store::open(&url, &StoreOptions::with_connections(8))
        .await
        .expect("open the database");
    let (account, _) = store
        .create_account(
            "Bench",
            None,
            "unlimited",
            &Default::default(),
            &["discord"],
        )
        .await
        .expect("account");
    let category = match store
        .create_category(&account.id, "sale", 0x00ff00, None, None, None)
        .await
        .expect("category")
    {
        CategoryCreate::Created(category) => category,
        other => panic!("{other:?}"),
    };
    let started = Instant::now();
    seed(&store, &account, &category, events).await;
    println!(
        "seeded {events} events 100 days old, each with a delivered delivery and its attempt, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let size_before = file_size(&url);

    let baseline = writes_during(&store, &account, &category, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    let mut batches = Vec::new();
    let settings = RetentionSettings {
        batch,
        ..RetentionSettings::default()
    };
    let mut pruned = None;
    let clock = Instant::now();
    let during = writes_during(&store, &account, &category, async {
        pruned = retention::prune(&store, &settings, now_millis(), |_, took| {
            batches.push(took)
        })
        .await
        .expect("prune");
    })
    .await;
    let elapsed = clock.elapsed();
    let pruned = pruned.expect("retention is on");
    let pruning: Duration = batches.iter().sum();
    batches.sort();
    println!(
        "prune: {} events, {} deliveries, {} attempts in {:.1} s, {} batches of {batch} events \
         holding the writer {:.1} s in all; a batch p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pruned.removed.events,
        pruned.removed.deliveries,
        pruned.removed.attempts,
        elapsed.as_secs_f64(),
        batches.len(),
        pruning.as_secs_f64(),
        ms(percentile(&batches, 0.50)),
        ms(percentile(&batches, 0.99)),
        ms(percentile(&batches, 1.0)),
    );
    for (label, latencies) in [("before", &baseline), ("during the prune", &during)] {
        println!(
            "intake-like writes {label}: {} writes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            ms(percentile(latencies, 0.50)),
            ms(percentile(latencies, 0.99)),
            ms(percentile(latencies, 1.0)),
        );
    }
    if let (Some(before), Some(after)) = (size_before, file_size(&url)) {
        println!(
            "SQLite file: {:.1} MB before, {:.1} MB after ({:.1} MB given back)",
            before as f64 / 1e6,
            after as f64 / 1e6,
            pruned.bytes_freed.unwrap_or(0) as f64 / 1e6,
        );
    }
}
/// `count` events 100 days old with one delivery each, delivered with one attempt.
async fn seed(store: &Store, account: &Account, category: &Category, count: usize) {
    let at = now_millis() - 100 * DAY_MS;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS * 8 {
        let (store, account, category) = (store.clone(), account.clone(), category.clone());
        writers.spawn(async move {
            for _ in (writer..count).step_by(WRITERS * 8) {
                insert(&store, &account, &category, at, &["discord"]).await;
            }
        });
    }
    while writers.join_next().await.is_some() {}
    let attempt = AttemptLog {
        started_at: at,
        duration_ms: 80,
        http_status: Some(200),
        error: None,
    };
    loop {
        let claimed = store
            .claim_due("seed", "discord", now_millis(), now_millis() + 60_000, 1000)
            .await
            .expect("claim");
        if claimed.is_empty() {
            break;
        }
        let mut finishing = tokio::task::JoinSet::new();
        for delivery in claimed {
            let (store, attempt) = (store.clone(), attempt.clone());
            finishing.spawn(async move {
                store
                    .finish_delivery(
                        delivery.id,
                        "seed",
                        Some(&attempt),
                        &DeliveryUpdate::Delivered,
                    )
                    .await
                    .expect("finish");
            });
        }
        while finishing.join_next().await.is_some() {}
    }
}

async fn insert(
    store: &Store,
    account: &Account,
    category: &Category,
    at: Millis,
    providers: &[&'static str],
) {
    let fields = Map::new();
    let event = NewEvent {
        account_id: &account.id,
        category,
        description: "A sale happened",
        fields: &fields,
        providers,
        events_limit: None,
        now: at,
        idempotency: None,
        decided_from: None,
    };
    match store.insert_event(&event).await.expect("insert") {
        IntakeResult::Accepted { .. } => {}
        other => panic!("{other:?}"),
    }
}

/// The latencies of new events written by [`WRITERS`] writers while `work` runs.
async fn writes_during(
    store: &Store,
    account: &Account,
    category: &Category,
    work: impl Future<Output = ()>,
) -> Vec<Duration> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (store, account, category, done) = (
            store.clone(),
            account.clone(),
            category.clone(),
            done.clone(),
        );
        writers.spawn(async move {
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let clock = Instant::now();
                // No delivery: the writes are intake's, and the queue stays out of the figures.
                insert(&store, &account, &category, now_millis(), &[]).await;
                latencies.push(clock.elapsed());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            latencies
        });
    }
    work.await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(latencies) = writers.join_next().await {
        all.extend(latencies.expect("writer"));
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], at: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * at).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn file_size(url: &str) -> Option<u64> {
    let path = url.strip_prefix("sqlite://")?;
    Some(std::fs::metadata(path).ok()?.len())
}
