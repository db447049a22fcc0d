//! Micro-benchmarks of intake's pure hot paths: body validation and API key hashing.
//!
//! `cargo bench -p pingpilot-core --bench hot_paths`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingpilot_core::api::validate_event;
use pingpilot_core::model::hash_api_key;
use serde_json::{Map, Value, json};

/// The body bench/run.sh sends (and the README's example).
const SMALL_BODY: &str = r#"{"category":"sale","description":"New purchase completed","fields":{"plan":"pro","amount":99.99,"recurring":true}}"#;

/// A key of the shape `pingpilot account create` prints: `pk_` and 40 alphanumerics.
const API_KEY: &str = "pk_7fQm2LxV9cR4tWb8NjK3hYp6ZdG1sUe5aXo0iMvT";

/// A large but valid body: a ~1,500-character description and the maximum of 25 fields, mixing
/// texts (some long), numbers and booleans.
fn large_body() -> String {
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
    json!({"category": "sale", "description": description, "fields": fields}).to_string()
}

fn validation(c: &mut Criterion) {
    let large = large_body();
    let mut group = c.benchmark_group("validate_event");
    for (name, text) in [("small", SMALL_BODY), ("large", large.as_str())] {
        let body: Value = serde_json::from_str(text).expect("benchmark body is JSON");
        validate_event(&body).expect("benchmark body is valid");
        group.bench_function(name, |b| b.iter(|| validate_event(black_box(&body))));
    }
    group.finish();

    // What intake does with the bytes it receives: parse, then validate.
    let mut group = c.benchmark_group("parse_and_validate");
    for (name, text) in [("small", SMALL_BODY), ("large", large.as_str())] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let body: Value = serde_json::from_slice(black_box(text.as_bytes())).unwrap();
                validate_event(&body)
            })
        });
    }
    group.finish();
}

fn key_hashing(c: &mut Criterion) {
    c.bench_function("hash_api_key", |b| {
        b.iter(|| hash_api_key(black_box(API_KEY)))
    });
}

criterion_group!(benches, validation, key_hashing);
criterion_main!(benches);
