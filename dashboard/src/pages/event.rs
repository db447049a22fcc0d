//! One event: its fields, each delivery with every attempt made, and a retry of the failed ones.

use maud::{Markup, html};
use pingpilot_core::model::{AttemptRecord, DeliveryRecord, DeliveryStatus, EventId, EventRecord};
use pingpilot_core::provider::EventMessage;
use pingpilot_core::service::deliveries::retry_failed_deliveries;
use poem::web::{Form, Path, Query};
use poem::{Route, get, handler, post};

use crate::PREFIX;
use crate::layout::{self, Nav, NoticeKind};
use crate::web::{CsrfOnly, DashError, Done, PageResult, SignedIn, csrf_field, see_other};

pub fn routes(route: Route) -> Route {
    route
        .at("/events/:id", get(event_page))
        .at("/events/:id/retry", post(retry))
}

fn event_url(id: &str) -> String {
    format!("{PREFIX}/events/{id}")
}

fn done_message(code: &str) -> Option<&'static str> {
    match code {
        "retried" => Some("The failed deliveries are queued again; they are sent shortly."),
        "nothing" => Some("Nothing to retry: no delivery of this event has failed."),
        _ => None,
    }
}

#[handler]
async fn event_page(
    user: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<Done>,
) -> PageResult {
    let store = user.state.store();
    let Some(id) = EventId::parse(&id) else {
        return Err(DashError::NotFound);
    };
    let Some((event, deliveries)) = store.event(&user.account.id, &id).await? else {
        return Err(DashError::NotFound);
    };
    let done = query.done.as_deref().and_then(done_message);
    let title = format!("{} event", event.category);
    let body = html! {
        p { a href={ (PREFIX) "/categories/" (event.category) } { "← " (event.category) } }
        h1 { (title) }
        @if let Some(text) = done { (layout::notice(NoticeKind::Done, text)) }
        (summary(&event))
        (deliveries_section(&user, &event, &deliveries))
    };
    user.page(Some(Nav::Overview), &title, body).await
}

fn summary(event: &EventRecord) -> Markup {
    html! {
        section.card aria-label="Event" {
            p.description { (event.description) }
            dl.details {
                dt { "Category" } dd { (event.category) }
                dt { "Received" } dd { (layout::time(event.created_at)) }
                dt { "Event id" } dd { code { (event.id) } }
            }
            h2 { "Fields" }
            @if event.fields.is_empty() {
                p.muted { "This event has no fields." }
            } @else {
                dl.fields {
                    @for (name, value) in &event.fields {
                        dt { (name) }
                        dd { (EventMessage::value_text(value)) }
                    }
                }
            }
        }
    }
}

/// The deliveries; while the event is pending, htmx reloads this part every few seconds.
fn deliveries_section(
    user: &SignedIn,
    event: &EventRecord,
    deliveries: &[DeliveryRecord],
) -> Markup {
    let pending = event.delivery_status == DeliveryStatus::Pending;
    let any_failed = deliveries
        .iter()
        .any(|d| d.status == DeliveryStatus::Failed);
    let url = event_url(&event.id);
    html! {
        section #deliveries
            hx-get=[pending.then_some(url.as_str())]
            hx-trigger=[pending.then_some("every 3s")]
            hx-select=[pending.then_some("#deliveries")]
            hx-swap=[pending.then_some("outerHTML")] {
            h2 { "Deliveries " (layout::status_badge(None, event.delivery_status, false, false)) }
            @if pending {
                p.hint { "Not every delivery is final yet; this part of the page updates by itself." }
            }
            @if deliveries.is_empty() {
                p.muted { "No channel was enabled when this event arrived, so nothing was sent." }
            }
            @if any_failed {
                form.retry method="post" action={ (url) "/retry" } {
                    (csrf_field(&user.csrf))
                    button.primary type="submit" { "Retry failed deliveries" }
                    span.hint { " Failed deliveries go back in the queue with a fresh set of attempts." }
                }
            }
            @for delivery in deliveries {
                (delivery_card(user, delivery))
            }
        }
    }
}

/// The delivery's provider's advice on an error it recorded.
fn advice(user: &SignedIn, delivery: &DeliveryRecord, error: &str) -> Option<&'static str> {
    user.state
        .provider(&delivery.provider)
        .and_then(|entry| entry.provider.advice(error))
}

fn delivery_card(user: &SignedIn, delivery: &DeliveryRecord) -> Markup {
    let delivered = delivery.status == DeliveryStatus::Delivered;
    let queued = delivery.status == DeliveryStatus::Pending
        && delivery.waiting_reason.is_none()
        && delivery.attempts.is_empty();
    let name = user
        .state
        .provider(&delivery.provider)
        .map_or(delivery.provider.as_str(), |entry| {
            entry.registration.display_name
        });
    html! {
        article.card.delivery {
            h3 {
                (name) " "
                (layout::status_badge(
                    None,
                    delivery.status,
                    delivery.waiting_reason.is_some(),
                    delivery.last_error.is_some(),
                ))
            }
            dl.details {
                @if let Some(reason) = &delivery.waiting_reason {
                    dt { "Waiting because" } dd { (reason) }
                }
                // Once delivered, an earlier attempt's error is history: the table keeps it.
                @if let (Some(error), false) = (&delivery.last_error, delivered) {
                    dt { "Last error" } dd { (error) }
                    @if let Some(advice) = advice(user, delivery, error) {
                        dt { "What to do" } dd { (advice) }
                    }
                }
                @if let Some(at) = delivery.next_attempt_at {
                    dt { "Next attempt" } dd { (layout::precise_time(at)) }
                }
                @if let Some(at) = delivery.delivered_at {
                    dt { "Delivered at" } dd { (layout::precise_time(at)) }
                }
            }
            @if queued {
                p.muted {
                    "No attempt yet: the first is due "
                    @if let Some(at) = delivery.next_attempt_at {
                        (layout::precise_time(at))
                    } @else { "now" }
                    ". Deliveries through one channel are spaced out to keep within its rate \
                     limit, so a busy channel can hold one back for a moment."
                }
            } @else {
                (attempts_table(name, &delivery.attempts))
            }
        }
    }
}

fn attempts_table(provider: &str, attempts: &[AttemptRecord]) -> Markup {
    html! {
        @if attempts.is_empty() {
            p.muted { "No attempt yet." }
        } @else {
            (layout::table(
                &format!("Attempts through {provider}"),
                "",
                html! { tr {
                    th scope="col" { "Time" }
                    th scope="col" { "Duration" }
                    th scope="col" { "HTTP status" }
                    th scope="col" { "Provider answer" }
                } },
                html! {
                    @for attempt in attempts {
                        tr {
                            td { (layout::precise_time(attempt.started_at)) }
                            td { (attempt.duration_ms) " ms" }
                            td {
                                @match attempt.http_status {
                                    Some(status) => (status),
                                    None => span.muted { "no answer" },
                                }
                            }
                            td {
                                @match &attempt.error {
                                    Some(error) => (error),
                                    None => "Accepted",
                                }
                            }
                        }
                    }
                },
            ))
        }
    }
}

#[handler]
async fn retry(user: SignedIn, Path(id): Path<String>, Form(form): Form<CsrfOnly>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let Some(id) = EventId::parse(&id) else {
        return Err(DashError::NotFound);
    };
    let Some(requeued) = retry_failed_deliveries(&user.state, &user.account.id, &id).await? else {
        return Err(DashError::NotFound);
    };
    let done = if requeued == 0 { "nothing" } else { "retried" };
    Ok(see_other(&format!("{}?done={done}", event_url(&id))))
}
