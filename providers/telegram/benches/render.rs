//! Micro-benchmark of the Telegram message text (HTML) for one event.
//!
//! `cargo bench -p pingpilot-telegram --bench render`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pingpilot_core::samples;
use pingpilot_telegram::render_text;

fn text(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_text");
    for (name, message) in samples::messages() {
        assert!(!render_text(&message).ends_with('…'), "nothing is cut");
        group.bench_function(name, |b| b.iter(|| render_text(black_box(&message))));
    }
    group.finish();
}

criterion_group!(benches, text);
criterion_main!(benches);
