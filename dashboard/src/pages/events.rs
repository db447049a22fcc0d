//! Events of every category: filtered by category, status, channel, text and days, newest
//! first, 25 a page, with a retry of every failed delivery of the filtered events. The filters
//! are a GET form, so a filtered view is a link and works without JavaScript.

use chrono::NaiveDate;
use maud::{Markup, html};
use pingpilot_core::model::{DeliveryStatus, EventId, Millis};
use pingpilot_core::service::deliveries::retry_matching;
use pingpilot_core::store::EventFilter;
use poem::web::{Form, Query};
use poem::{Route, get, handler, post};
use serde::{Deserialize, Serialize};

use crate::PREFIX;
use crate::events_table::events_table;
use crate::layout::{self, Nav, NoticeKind};
use crate::web::{PageResult, SignedIn, csrf_field, see_other};

/// Events per page.
const PAGE_SIZE: u32 = 25;
/// The longest search text taken.
const MAX_SEARCH: usize = 200;
const DAY_MS: Millis = 86_400_000;

pub fn routes(route: Route) -> Route {
    route
        .at("/events", get(events_page))
        .at("/events/retry", post(retry_failed))
}

/// The filters as the form and the links carry them; empty means any.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
struct Filters {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    category: String,
    /// `pending`, `delivered` or `failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    /// A provider id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    channel: String,
    /// Text in the description or a field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    /// First and last day shown, `YYYY-MM-DD` (UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    #[serde(flatten)]
    filters: Filters,
    /// The id of the last event of the previous page, and how many came before it.
    before: Option<String>,
    /// Text, like every field here: query strings with flattened fields come as text.
    skipped: Option<String>,
    /// `retried` after a retry, with how many deliveries.
    done: Option<String>,
    count: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    filters: Filters,
}

/// The filters, read: what the store is asked, and what could not be read.
struct Parsed {
    filter: EventFilter,
    problems: Vec<&'static str>,
}

impl Filters {
    fn parse(&self, user: &SignedIn) -> Parsed {
        let mut problems = Vec::new();
        let status = match self.status.as_str() {
            "" => None,
            text => DeliveryStatus::parse(&text.to_ascii_uppercase()),
        };
        let channel = Some(self.channel.trim())
            .filter(|id| user.state.provider(id).is_some())
            .map(str::to_string);
        let search = self.q.trim();
        let search = (!search.is_empty()).then(|| search.chars().take(MAX_SEARCH).collect());
        let mut day = |text: &str| {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
            if parsed.is_none() {
                problems
                    .push("Dates are written YYYY-MM-DD, e.g. 2026-12-04; that one was left out.");
            }
            parsed.map(|date| {
                date.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis()
            })
        };
        let since = day(&self.from);
        // The last day is shown whole.
        let until = day(&self.to).map(|start| start + DAY_MS);
        Parsed {
            filter: EventFilter {
                category: Some(self.category.trim())
                    .filter(|name| !name.is_empty())
                    .map(str::to_string),
                status,
                channel,
                search,
                since,
                until,
                ..EventFilter::default()
            },
            problems,
        }
    }

    /// This page with these filters, and `more` after them.
    fn url(&self, more: &[(&str, String)]) -> String {
        let mut query = serde_urlencoded::to_string(self).unwrap_or_default();
        for (name, value) in more {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&serde_urlencoded::to_string([(name, value)]).unwrap_or_default());
        }
        if query.is_empty() {
            format!("{PREFIX}/events")
        } else {
            format!("{PREFIX}/events?{query}")
        }
    }

    fn any(&self) -> bool {
        serde_urlencoded::to_string(self).is_ok_and(|query| !query.is_empty())
    }
}

#[handler]
async fn events_page(user: SignedIn, Query(query): Query<PageQuery>) -> PageResult {
    let store = user.state.store();
    let account = &user.account.id;
    let Parsed {
        mut filter,
        problems,
    } = query.filters.parse(&user);
    // With the events that have failed deliveries among them, for the retry.
    let (total, failed) = store.count_matching(account, &filter).await?;
    filter.before_id = query
        .before
        .clone()
        .filter(|id| EventId::parse(id).is_some());
    let skipped = if filter.before_id.is_some() {
        query
            .skipped
            .as_deref()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    // One more than shown tells whether an older page exists.
    filter.limit = PAGE_SIZE + 1;
    let mut events = store.events(account, &filter).await?;
    let older = (events.len() > PAGE_SIZE as usize).then(|| {
        events.truncate(PAGE_SIZE as usize);
        events.last().map(|event| event.id.to_string())
    });
    let ids: Vec<EventId> = events.iter().map(|event| event.id.clone()).collect();
    let badges = store.delivery_badges(account, &ids).await?;
    let categories = store.categories(account).await?;
    let filters = &query.filters;
    let body = html! {
        h1 { "Events" }
        @if query.done.as_deref() == Some("retried") {
            @let count = query.count.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
            (layout::notice(NoticeKind::Done, &retried_text(count)))
        }
        @for problem in &problems { (layout::notice(NoticeKind::Problem, problem)) }
        (filter_form(&user, filters, &categories))
        @if failed > 0 {
            form.retry-all method="post" action={ (PREFIX) "/events/retry" } {
                (csrf_field(&user.csrf))
                @for (name, value) in filter_fields(filters) {
                    input type="hidden" name=(name) value=(value);
                }
                button type="submit" {
                    "Retry the failed deliveries of " (layout::thousands(failed)) " "
                    (if failed == 1 { "event" } else { "events" })
                }
            }
        }
        @if events.is_empty() {
            p.muted {
                @if filters.any() { "No events match these filters." }
                @else { "No events yet: send one with an API key and it shows here." }
            }
        } @else {
            p.position {
                "Events " (layout::thousands(skipped + 1)) "\u{2013}"
                (layout::thousands(skipped + events.len() as u64)) " of "
                (layout::thousands(total)) ", newest first"
            }
            (events_table(&user, &events, &badges, true))
            @if skipped > 0 || older.is_some() {
                nav.pager.row aria-label="Pages" {
                    @if skipped > 0 {
                        a href=(filters.url(&[])) { "← Newest events" }
                    }
                    @if let Some(Some(before)) = &older {
                        @let next = skipped + u64::from(PAGE_SIZE);
                        a href=(filters.url(&[("before", before.clone()), ("skipped", next.to_string())]))
                            rel="next" { "Older events →" }
                    }
                }
            }
        }
    };
    user.page(Some(Nav::Events), "Events", body).await
}

fn retried_text(count: u64) -> String {
    match count {
        0 => "Nothing to retry: none of these events has a failed delivery now.".into(),
        1 => "1 failed delivery is queued again.".into(),
        n => format!(
            "{} failed deliveries are queued again.",
            layout::thousands(n)
        ),
    }
}

/// The filters as form fields, for the retry form.
fn filter_fields(filters: &Filters) -> Vec<(&'static str, &str)> {
    [
        ("category", filters.category.as_str()),
        ("status", filters.status.as_str()),
        ("channel", filters.channel.as_str()),
        ("q", filters.q.as_str()),
        ("from", filters.from.as_str()),
        ("to", filters.to.as_str()),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .collect()
}

fn filter_form(
    user: &SignedIn,
    filters: &Filters,
    categories: &[pingpilot_core::model::Category],
) -> Markup {
    let statuses = [
        ("pending", "Pending"),
        ("delivered", "Delivered"),
        ("failed", "Failed"),
    ];
    html! {
        form.row.filters method="get" action={ (PREFIX) "/events" } aria-label="Filter events" {
            div {
                label for="filter-category" { "Category" }
                select #filter-category name="category" {
                    option value="" { "All categories" }
                    @for category in categories {
                        option value=(category.name)
                            selected[category.name.eq_ignore_ascii_case(filters.category.trim())] {
                            (category.name)
                        }
                    }
                }
            }
            div {
                label for="filter-status" { "Status" }
                select #filter-status name="status" {
                    option value="" { "Any" }
                    @for (value, label) in statuses {
                        option value=(value) selected[filters.status == value] { (label) }
                    }
                }
            }
            div {
                label for="filter-channel" { "Channel" }
                select #filter-channel name="channel" {
                    option value="" { "Any channel" }
                    @for entry in &user.state.providers {
                        @let id = entry.registration.id;
                        option value=(id) selected[filters.channel == id] {
                            (entry.registration.display_name)
                        }
                    }
                }
            }
            div.grow {
                label for="filter-q" { "Search" }
                input #filter-q type="search" name="q" value=(filters.q) maxlength="200"
                    placeholder="Words in descriptions or field values";
            }
            div {
                label for="filter-from" { "From" }
                input #filter-from type="date" name="from" value=(filters.from);
            }
            div {
                label for="filter-to" { "To" }
                input #filter-to type="date" name="to" value=(filters.to);
            }
            button type="submit" { "Show" }
            @if filters.any() {
                a href={ (PREFIX) "/events" } { "Clear" }
            }
        }
    }
}

#[handler]
async fn retry_failed(user: SignedIn, Form(form): Form<RetryForm>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let Parsed { filter, .. } = form.filters.parse(&user);
    let requeued = retry_matching(&user.state, &user.account.id, &filter).await?;
    Ok(see_other(&form.filters.url(&[
        ("done", "retried".to_string()),
        ("count", requeued.to_string()),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_filters_encoded() {
        let filters = Filters {
            category: "sale".into(),
            q: "a&b c".into(),
            ..Filters::default()
        };
        assert_eq!(
            filters.url(&[]),
            "/dashboard/events?category=sale&q=a%26b+c"
        );
        assert_eq!(
            filters.url(&[("before", "evt_1".into())]),
            "/dashboard/events?category=sale&q=a%26b+c&before=evt_1"
        );
        assert_eq!(Filters::default().url(&[]), "/dashboard/events");
        assert!(!Filters::default().any());
    }

    #[test]
    fn retried_deliveries_are_counted_in_words() {
        assert_eq!(retried_text(1), "1 failed delivery is queued again.");
        assert_eq!(
            retried_text(1200),
            "1,200 failed deliveries are queued again."
        );
    }
}
