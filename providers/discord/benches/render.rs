//! Micro-benchmark of the Discord embed for one event.
//!
//! `cargo bench -p pingpilot-discord --bench render`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingpilot_core::samples;
use pingpilot_discord::build_embed;

fn embed(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_embed");
    for (name, message) in samples::messages() {
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
