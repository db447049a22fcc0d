//! Micro-benchmarks of intake's pure hot paths: body validation and API key hashing.
//!
//! `cargo bench -p pingpilot-core --features samples --bench hot_paths` (or `bench/micro.sh`)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingpilot_core::api::EventRequest;
use pingpilot_core::model::hash_api_key;
use pingpilot_core::samples;
use serde_json::Value;

/// A key of the shape `pingpilot account create` prints: `pk_` and 40 alphanumerics.
const API_KEY: &str = "pk_7fQm2LxV9cR4tWb8NjK3hYp6ZdG1sUe5aXo0iMvT";

fn validation(c: &mut Criterion) {
    let bodies = [
        (
            "small",
            samples::body(samples::SMALL_DESCRIPTION, samples::small_fields()),
        ),
        (
            "large",
            samples::body(&samples::large_description(), samples::large_fields()),
        ),
    ];
    let mut group = c.benchmark_group("validate_event");
    for (name, text) in &bodies {
        let body: Value = serde_json::from_str(text).expect("benchmark body is JSON");
        EventRequest::validate(&body).expect("benchmark body is valid");
        group.bench_function(*name, |b| {
            b.iter(|| EventRequest::validate(black_box(&body)))
        });
    }
    group.finish();

    // What intake does with the bytes it receives: parse, then validate.
    let mut group = c.benchmark_group("parse_and_validate");
    for (name, text) in &bodies {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let body: Value = serde_json::from_slice(black_box(text.as_bytes())).unwrap();
                EventRequest::validate(&body)
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
