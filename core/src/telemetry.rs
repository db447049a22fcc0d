//! Trace ids in the logs: spans of requests and deliveries declare an empty `trace_id` field,
//! filled in when the binary exports traces (its `otel` feature), so that a log line leads to
//! its trace. Core itself knows nothing of the exporter.

use std::sync::OnceLock;

/// Reads a span's trace id; set once, by the binary, when it exports traces.
static TRACE_ID_READER: OnceLock<fn(&tracing::Span) -> Option<String>> = OnceLock::new();

pub fn set_trace_id_reader(reader: fn(&tracing::Span) -> Option<String>) {
    let _ = TRACE_ID_READER.set(reader);
}

/// Fills in the span's `trace_id` field, when traces are exported.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(read) = TRACE_ID_READER.get()
        && let Some(id) = read(span)
    {
        span.record("trace_id", id);
    }
}
