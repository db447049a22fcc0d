//! OpenTelemetry traces (cargo feature `otel`): the spans of requests and delivery attempts go
//! to `otel.endpoint` over OTLP/HTTP (JSON), in batches, from a thread of the exporter's own.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use pingpilot_core::config::OtelSettings;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The exporter while the process runs: dropping it sends what is still buffered.
pub struct Exporter(SdkTracerProvider);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown() {
            eprintln!("warning: the last traces could not be sent: {err}");
        }
    }
}

/// The layer that turns spans into OpenTelemetry spans, and the exporter behind it; `None`
/// without `otel.endpoint`. Built outside any async runtime (its HTTP client blocks).
pub fn layer<S>(
    settings: &OtelSettings,
) -> Result<Option<(impl Layer<S> + use<S>, Exporter)>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(endpoint) = &settings.endpoint else {
        return Ok(None);
    };
    // The collector's base address, as OTEL_EXPORTER_OTLP_ENDPOINT is: traces go under it.
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(traces)
        .build()
        .map_err(|err| format!("otel.endpoint: {err}"))?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            pingpilot_core::app::VERSION,
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("pingpilot");
    pingpilot_core::telemetry::set_trace_id_reader(trace_id);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Exporter(provider))))
}

/// A span's trace id as OTLP writes it (32 hex digits).
fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
