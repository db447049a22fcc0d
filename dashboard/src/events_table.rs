//! The events table of the category page and the events page: when, what, where it went, then
//! the first few fields, each cell on one line.

use std::collections::BTreeMap;

use maud::{Markup, html};
use pingpilot_core::model::{EventId, EventRecord};
use pingpilot_core::store::DeliveryBadge;
use serde_json::Value;

use crate::PREFIX;
use crate::layout;
use crate::web::SignedIn;

/// Field columns the events table shows at most; the other fields are on each event's page.
const FIELD_COLUMNS: usize = 4;

/// The events, newest first: when, what, where it went, then the first few fields, each cell on
/// one line and cut with an ellipsis (the whole text on hover and on the event's page).
/// With `show_category`, each event's category comes after its time (events of several
/// categories).
pub fn events_table(
    user: &SignedIn,
    events: &[EventRecord],
    badges: &BTreeMap<EventId, Vec<DeliveryBadge>>,
    show_category: bool,
) -> Markup {
    let all_columns = field_columns(events);
    let shown = &all_columns[..all_columns.len().min(FIELD_COLUMNS)];
    let more_columns = all_columns.len() > shown.len();
    layout::table(
        "Events table",
        "events",
        html! {
            tr {
                th scope="col" { "Time" }
                @if show_category { th scope="col" { "Category" } }
                th scope="col" { "Description" }
                th scope="col" { "Delivery" }
                @for column in shown { th scope="col" { (column) } }
                @if more_columns { th scope="col" { "Other fields" } }
            }
        },
        html! {
            @for event in events {
                @let url = format!("{PREFIX}/events/{}", event.id);
                tr {
                    td {
                        a href=(url) { (layout::relative_time(event.created_at)) }
                    }
                    @if show_category {
                        td {
                            a href={ (PREFIX) "/categories/" (event.category) } {
                                span.cut title=(event.category) { (event.category) }
                            }
                        }
                    }
                    td { span.cut title=(event.description) { (event.description) } }
                    td.badges {
                        @for badge in badges.get(&event.id).into_iter().flatten() {
                            (delivery_badge(user, badge)) " "
                        }
                    }
                    @for column in shown {
                        @let text = event.fields.get(column).map(field_text).unwrap_or_default();
                        td { span.cut title=(text) { (text) } }
                    }
                    @if more_columns {
                        @let hidden = event.fields.keys().filter(|name| !shown.contains(name)).count();
                        td {
                            @if hidden > 0 {
                                a.more href=(url) { "+" (hidden) "\u{a0}more" }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn delivery_badge(user: &SignedIn, badge: &DeliveryBadge) -> Markup {
    let provider = user
        .state
        .provider(&badge.provider)
        .map_or(badge.provider.as_str(), |entry| {
            entry.registration.display_name
        });
    layout::status_badge(Some(provider), badge.status, badge.waiting, badge.had_error)
}

/// Field names in the order they first appear, newest event first.
pub fn field_columns(events: &[EventRecord]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for event in events {
        for name in event.fields.keys() {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    columns
}

/// A field's value as a table shows it: strings without quotes.
fn field_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_follow_first_appearance() {
        let event = |fields: Value| EventRecord {
            id: EventId::parse("evt_1").expect("an event id"),
            category: "sale".into(),
            description: String::new(),
            fields: fields.as_object().cloned().unwrap_or_default(),
            delivery_status: pingpilot_core::model::DeliveryStatus::Pending,
            created_at: 0,
        };
        let columns = field_columns(&[
            event(json!({"plan": "pro"})),
            event(json!({"amount": 1, "plan": "x"})),
        ]);
        assert_eq!(columns, ["plan", "amount"]);
        assert_eq!(field_text(&json!("pro")), "pro");
        assert_eq!(field_text(&json!(12.5)), "12.5");
        assert_eq!(field_text(&json!(true)), "true");
    }
}
