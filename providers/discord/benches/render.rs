//! Micro-benchmark of the Discord embed for one event.
//!
//! `cargo bench -p pingpilot-discord --bench render`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use pingpilot_core::provider::EventMessage;
use pingpilot_discord::build_embed;
use serde_json::{Map, Value, json};

/// The event of bench/run.sh's body, as delivery hands it to the provider.
fn small_message() -> EventMessage {
    message(
        "New purchase completed".to_string(),
        json!({"plan": "pro", "amount": 99.99, "recurring": true}),
    )
}

/// A ~1,500-character description and 25 fields mixing texts (some long), numbers and booleans;
/// within Discord's limits, so nothing is cut.
fn large_message() -> EventMessage {
    let description = "Order A-10423 was paid by card ending 4242; the invoice was sent to \
                       billing@example.com and the warehouse was asked to ship two items. "
        .repeat(11);
    let mut fields = Map::new();
    for i in 0..25 {
        let value = match i % 5 {
            0 => json!(format!("customer-{i}@example.com")),
            1 => json!(1000.5 + f64::from(i)),
            2 => json!(i % 2 == 0),
            3 => json!(format!(
                "https://shop.example.com/orders/A-10423?item={i}&ref=newsletter"
            )),
            _ => json!("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(4)),
        };
        fields.insert(format!("field_{i:02}"), value);
    }
    message(description, Value::Object(fields))
}

fn message(description: String, fields: Value) -> EventMessage {
    let Value::Object(fields) = fields else {
        unreachable!("fields are an object")
    };
    EventMessage {
        event_id: "evt_01JDQ3Z8F6W2M4N7P9R1S3T5V7".to_string(),
        category: "sale".to_string(),
        emoji: Some("💰".to_string()),
        color: 0xFFB02E,
        description,
        fields,
        created_at: Utc.with_ymd_and_hms(2026, 11, 28, 9, 16, 5).unwrap(),
    }
}

fn embed(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_embed");
    for (name, message) in [("small", small_message()), ("large", large_message())] {
        let fields = build_embed(&message)["fields"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(fields, message.fields.len(), "no field is dropped");
        group.bench_function(name, |b| b.iter(|| build_embed(black_box(&message))));
    }
    group.finish();
}

criterion_group!(benches, embed);
criterion_main!(benches);
