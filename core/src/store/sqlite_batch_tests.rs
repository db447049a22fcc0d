//! The SQLite batch writer's tests (a sibling of `sqlite_batch.rs`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use pingpilot_config::SqliteSynchronous as Synchronous;

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite_checkpoint::{CHECKPOINT_FRAMES, RESTART_FRAMES};
use crate::store::{Accounts, Categories, CategoryCreate, IntakeResult, StoreOptions};

fn settings() -> ConnectionSettings {
    (&StoreOptions::with_connections(2)).into()
}

/// A store with an account and a category, and a batch writer on its writer connection.
struct Setup {
    dir: tempfile::TempDir,
    store: SqliteStore,
    writer: SqliteBatchWriter,
    account_id: AccountId,
    category: crate::model::Category,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("batch.db").display());
    let store = SqliteStore::open(&url, 2).await.expect("open");
    let (account, _) = store
        .create_account("Test", None, "free", &BTreeMap::new(), &[])
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
    let writer = SqliteBatchWriter::open(
        store.writer.clone(),
        &dir.path().join("batch.db"),
        settings(),
    )
    .expect("batch connection");
    Setup {
        dir,
        store,
        writer,
        account_id: account.id,
        category,
    }
}

fn intake(account_id: &AccountId, category: &crate::model::Category, now: Millis) -> IntakeJob {
    IntakeJob {
        account_id: account_id.clone(),
        category: category.clone(),
        description: "something happened".into(),
        fields: "{}".into(),
        providers: vec!["discord"],
        events_limit: None,
        now,
        idempotency: None,
        verify: None,
    }
}

fn claim(owner: &str, now: Millis, limit: u32) -> ClaimJob {
    ClaimJob {
        owner: owner.into(),
        provider: "discord".into(),
        now,
        lease_until: now + 30_000,
        limit,
    }
}

/// The account owning each of these deliveries, in the order given.
async fn owners(setup: &Setup, ids: &[i64]) -> Vec<String> {
    let mut owners = Vec::new();
    for id in ids {
        owners.push(
            sqlx::query_scalar("SELECT account_id FROM deliveries WHERE id = ?")
                .bind(id)
                .fetch_one(&setup.store.readers)
                .await
                .expect("owner"),
        );
    }
    owners
}

#[tokio::test]
async fn claims_take_accounts_in_turn_and_a_retry_goes_behind_its_account() {
    let setup = setup().await;
    let (other, _) = setup
        .store
        .create_account("Quiet", None, "free", &BTreeMap::new(), &[])
        .await
        .expect("account");
    let now = now_millis();
    // A backlog of 10, then another account's 2, queued later.
    let busy: Vec<_> = (0..10)
        .map(|_| intake(&setup.account_id, &setup.category, now))
        .collect();
    setup
        .writer
        .write_batch(&busy, &[], &[])
        .await
        .expect("busy");
    let quiet: Vec<_> = (0..2)
        .map(|_| intake(&other.id, &setup.category, now))
        .collect();
    setup
        .writer
        .write_batch(&quiet, &[], &[])
        .await
        .expect("quiet");
    let written = setup
        .writer
        .write_batch(&[], &[], &[claim("w1", now, 4)])
        .await
        .expect("claim");
    let mut claimed = written.claims[0].clone();
    claimed.sort_unstable();
    let busy_id = setup.account_id.clone();
    assert_eq!(
        owners(&setup, &claimed).await,
        [
            busy_id.clone(),
            busy_id.clone(),
            other.id.clone(),
            other.id.clone()
        ],
        "both of the quiet account's deliveries among the first four"
    );
    // The busy account's first delivery fails and is retried: it goes behind its own.
    let retried = claimed[0];
    let finish = FinishJob {
        delivery_id: retried,
        owner: "w1".into(),
        attempt: None,
        update: DeliveryUpdate::Retry {
            at: now,
            counted: true,
            error: "boom".into(),
        },
    };
    setup
        .writer
        .write_batch(&[], &[finish], &[])
        .await
        .expect("retry");
    let written = setup
        .writer
        .write_batch(&[], &[], &[claim("w2", now, 20)])
        .await
        .expect("claim the rest");
    assert_eq!(written.claims[0].len(), 9);
    let last: i64 = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE status = 'PENDING' ORDER BY fair_key DESC, id DESC \
         LIMIT 1",
    )
    .fetch_one(&setup.store.readers)
    .await
    .expect("last in the queue");
    assert_eq!(last, retried);
}

#[tokio::test]
async fn claims_in_one_batch_lease_apart_what_the_batch_queued() {
    let setup = setup().await;
    let now = now_millis();
    let jobs: Vec<_> = (0..5)
        .map(|_| intake(&setup.account_id, &setup.category, now))
        .collect();
    let claims = [
        claim("w1", now, 3),
        claim("w2", now, 3),
        claim("w3", now, 3),
    ];
    let written = setup
        .writer
        .write_batch(&jobs, &[], &claims)
        .await
        .expect("batch");
    assert!(
        written
            .intake
            .iter()
            .all(|result| matches!(result, IntakeResult::Accepted { .. }))
    );
    let sizes: Vec<usize> = written.claims.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 2, 0]);
    let leased: HashSet<i64> = written.claims.iter().flatten().copied().collect();
    assert_eq!(
        leased.len(),
        5,
        "a delivery leased twice: {:?}",
        written.claims
    );
    // Each claim's leases went to its own owner.
    for (ids, owner) in written.claims.iter().zip(["w1", "w2"]) {
        for id in ids {
            let holder: String =
                sqlx::query_scalar("SELECT lease_owner FROM deliveries WHERE id = ?")
                    .bind(id)
                    .fetch_one(&setup.store.readers)
                    .await
                    .expect("lease owner");
            assert_eq!(holder, owner);
        }
    }
}

#[tokio::test]
async fn one_batch_sees_its_own_idempotency_keys_and_quota_counts() {
    let setup = setup().await;
    let now = now_millis();
    let with_key = |key: &str, hash: &str| {
        let mut job = intake(&setup.account_id, &setup.category, now);
        job.idempotency = Some((key.into(), hash.into()));
        job.events_limit = Some(2);
        job
    };
    let jobs = [
        with_key("order-1", "h1"),
        with_key("order-1", "h1"),
        with_key("order-1", "h2"),
        with_key("order-2", "h3"),
        with_key("order-3", "h4"),
    ];
    let written = setup
        .writer
        .write_batch(&jobs, &[], &[])
        .await
        .expect("batch");
    let first = match &written.intake[0] {
        IntakeResult::Accepted { event_id } => event_id.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(&written.intake[1], IntakeResult::Replayed { event_id } if *event_id == first)
    );
    assert!(matches!(written.intake[2], IntakeResult::KeyConflict));
    assert!(matches!(written.intake[3], IntakeResult::Accepted { .. }));
    // The plan allows two events a month: the batch's own count stops the third.
    assert!(matches!(written.intake[4], IntakeResult::QuotaExceeded));
    let counted: i64 = sqlx::query_scalar("SELECT events FROM quota_usage WHERE account_id = ?")
        .bind(&setup.account_id)
        .fetch_one(&setup.store.readers)
        .await
        .expect("count");
    assert_eq!(counted, 2);
    // A later batch finds the key the first one stored.
    let again = setup
        .writer
        .write_batch(&[with_key("order-1", "h1")], &[], &[])
        .await
        .expect("later batch");
    assert!(matches!(&again.intake[0], IntakeResult::Replayed { event_id } if *event_id == first));
}

/// The WAL's length in frames, read off its file.
fn wal_frames(setup: &Setup) -> i64 {
    const HEADER: u64 = 32;
    const FRAME: u64 = 24 + 4096;
    let wal = setup.dir.path().join("batch.db-wal");
    let len = std::fs::metadata(wal).map_or(0, |meta| meta.len());
    (len.saturating_sub(HEADER) / FRAME) as i64
}

fn database_file_len(setup: &Setup) -> u64 {
    std::fs::metadata(setup.dir.path().join("batch.db")).map_or(0, |meta| meta.len())
}

async fn write_events(setup: &Setup, events: usize) {
    let jobs: Vec<_> = (0..events)
        .map(|_| intake(&setup.account_id, &setup.category, now_millis()))
        .collect();
    setup
        .writer
        .write_batch(&jobs, &[], &[])
        .await
        .expect("batch");
}

#[tokio::test]
async fn the_checkpointer_copies_the_wal_while_the_writer_never_waits_for_it() {
    let setup = setup().await;
    let before = database_file_len(&setup);
    let threshold = i64::from(CHECKPOINT_FRAMES);
    let restart = i64::from(RESTART_FRAMES);
    while wal_frames(&setup) < threshold + 50 {
        write_events(&setup, 20).await;
    }
    // Below the length at which the writer checkpoints itself: a grown database file is
    // the checkpointer's work.
    assert!(
        wal_frames(&setup) < restart,
        "{} frames",
        wal_frames(&setup)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while database_file_len(&setup) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was checkpointed: the database file is still {before} bytes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_wal_starts_over_even_when_the_checkpointer_falls_behind() {
    let mut setup = setup().await;
    let path = setup.dir.path().join("batch.db");
    setup.writer = SqliteBatchWriter::open_with(
        setup.store.writer.clone(),
        &path,
        settings(),
        Checkpointer::stalled(),
    )
    .expect("batch connection");
    let restart = i64::from(RESTART_FRAMES);
    let mut longest = 0;
    // About three times the restart length in frames.
    for _ in 0..1_200 {
        write_events(&setup, 20).await;
        longest = longest.max(wal_frames(&setup));
    }
    assert!(longest >= restart, "the WAL never reached {restart} frames");
    assert!(
        longest < restart + 100,
        "the WAL grew to {longest} frames without starting over"
    );
}

/// `PRAGMA synchronous` on the store's writer and on the batch connection.
async fn synchronous_levels(store: &SqliteStore, writer: &SqliteBatchWriter) -> (i64, i64) {
    let sqlx_level: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *store.writer.lock().await.expect("writer"))
        .await
        .expect("pragma");
    let batch_level: i64 = writer
        .conn
        .lock()
        .await
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("pragma");
    (sqlx_level, batch_level)
}

#[tokio::test]
async fn commits_are_synced_to_disk_unless_configured_otherwise() {
    let setup = setup().await;
    // FULL (2): a commit answered is on disk, power cut or not.
    assert_eq!(
        synchronous_levels(&setup.store, &setup.writer).await,
        (2, 2)
    );
    let url = format!("sqlite://{}", setup.dir.path().join("normal.db").display());
    let options = StoreOptions {
        synchronous: Synchronous::Normal,
        ..StoreOptions::with_connections(2)
    };
    let store = SqliteStore::open_with(&url, &options).await.expect("open");
    let writer = SqliteBatchWriter::open(
        store.writer.clone(),
        &setup.dir.path().join("normal.db"),
        (&options).into(),
    )
    .expect("batch connection");
    assert_eq!(synchronous_levels(&store, &writer).await, (1, 1));
}

#[tokio::test]
async fn a_failed_batch_is_rolled_back_and_the_writer_stays_usable() {
    let setup = setup().await;
    let now = now_millis();
    let mut unknown = intake(&setup.account_id, &setup.category, now);
    unknown.account_id = "acct_missing".into();
    let jobs = [intake(&setup.account_id, &setup.category, now), unknown];
    assert!(setup.writer.write_batch(&jobs, &[], &[]).await.is_err());
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&setup.store.readers)
        .await
        .expect("count");
    assert_eq!(events, 0, "the batch's first event outlived its failure");
    let written = setup
        .writer
        .write_batch(&jobs[..1], &[], &[claim("w1", now, 10)])
        .await
        .expect("the next batch");
    assert_eq!(written.claims, [vec![1]]);
}
