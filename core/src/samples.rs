//! Sample events for the micro-benchmarks (feature `samples`): the event `bench/run.sh` sends,
//! and a large but valid one, so every benchmark measures the same inputs.

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};

use crate::provider::EventMessage;

/// The description of the event `bench/run.sh` sends (and the README's example).
pub const SMALL_DESCRIPTION: &str = "New purchase completed";

/// The fields of the event `bench/run.sh` sends.
pub fn small_fields() -> Map<String, Value> {
    object(json!({"plan": "pro", "amount": 99.99, "recurring": true}))
}

/// A ~1,500-character description.
pub fn large_description() -> String {
    "Order A-10423 was paid by card ending 4242; the invoice was sent to billing@example.com \
     and the warehouse was asked to ship two items. "
        .repeat(11)
}

/// The maximum of 25 fields, mixing texts (some long), numbers and booleans; within Discord's
/// and Telegram's limits, so nothing is cut.
pub fn large_fields() -> Map<String, Value> {
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
    fields
}

/// A `POST /api/v1/event` body of the `sale` category.
pub fn body(description: &str, fields: Map<String, Value>) -> String {
    json!({"category": "sale", "description": description, "fields": fields}).to_string()
}

/// An event of the `sale` category as delivery hands it to a provider.
pub fn message(description: String, fields: Map<String, Value>) -> EventMessage {
    EventMessage {
        event_id: "evt_01JDQ3Z8F6W2M4N7P9R1S3T5V7".to_string(),
        category: "sale".to_string(),
        emoji: Some("💰".to_string()),
        color: 0xFFB02E,
        description,
        fields,
        created_at: Utc
            .with_ymd_and_hms(2026, 11, 28, 9, 16, 5)
            .single()
            .expect("a valid time"),
    }
}

/// The small and the large event, named, as every benchmark group runs them.
pub fn messages() -> [(&'static str, EventMessage); 2] {
    [
        (
            "small",
            message(SMALL_DESCRIPTION.to_string(), small_fields()),
        ),
        ("large", message(large_description(), large_fields())),
    ]
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
