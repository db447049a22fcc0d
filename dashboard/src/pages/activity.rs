//! Activity: the requests made with the account's API keys, refused ones included, newest
//! first, filtered by key and status. One row stands for the requests of one kind in one minute.

use std::collections::HashMap;

use maud::{Markup, html};
use pingpilot_core::model::ApiKeyInfo;
use pingpilot_core::store::{ActivityQuery, ActivityRow, StatusFilter};
use poem::web::Query;
use poem::{Route, get, handler};

use crate::PREFIX;
use crate::layout::{self, Nav};
use crate::web::{PageResult, SignedIn};

/// Rows a page shows.
const PAGE_ROWS: u32 = 50;

/// Statuses offered in the filter besides "accepted" and "refused": those the API documents.
const STATUSES: [u16; 8] = [400, 403, 404, 409, 413, 422, 429, 500];

pub fn routes(route: Route) -> Route {
    route.at("/activity", get(activity_page))
}

#[derive(Debug, Default, serde::Deserialize)]
struct Filters {
    /// A key prefix; empty for every key.
    key: Option<String>,
    /// `accepted`, `refused` or a status code; empty for all.
    status: Option<String>,
    /// Rows skipped, for the pages after the first.
    from: Option<u32>,
}

impl Filters {
    fn status(&self) -> StatusFilter {
        match self.status.as_deref().map(str::trim) {
            Some("accepted") => StatusFilter::Accepted,
            Some("refused") => StatusFilter::Refused,
            Some(code) => code
                .parse()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .map_or(StatusFilter::Any, StatusFilter::Exactly),
            None => StatusFilter::Any,
        }
    }

    fn key(&self) -> Option<&str> {
        self.key
            .as_deref()
            .map(str::trim)
            .filter(|key| !key.is_empty())
    }

    /// The page's address with these filters, starting at row `from`.
    fn url(&self, from: u32) -> String {
        let mut url = format!("{PREFIX}/activity?");
        // Prefixes are letters, digits and `_`; anything else matches no key, and a link
        // leaves it out.
        if let Some(key) = self.key().filter(|key| {
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }) {
            url.push_str(&format!("key={key}&"));
        }
        if let Some(status) = status_value(self.status()) {
            url.push_str(&format!("status={status}&"));
        }
        if from > 0 {
            url.push_str(&format!("from={from}"));
        }
        url.trim_end_matches(['&', '?']).to_string()
    }
}

/// A status filter as the form and the address say it.
fn status_value(filter: StatusFilter) -> Option<String> {
    match filter {
        StatusFilter::Any => None,
        StatusFilter::Accepted => Some("accepted".into()),
        StatusFilter::Refused => Some("refused".into()),
        StatusFilter::Exactly(code) => Some(code.to_string()),
    }
}

#[handler]
async fn activity_page(user: SignedIn, Query(filters): Query<Filters>) -> PageResult {
    let store = user.state.store();
    let from = filters.from.unwrap_or(0);
    let query = ActivityQuery {
        key_prefix: filters.key().map(str::to_string),
        status: filters.status(),
        offset: from,
        limit: PAGE_ROWS,
    };
    let (rows, total) = store.activity(&user.account.id, &query).await?;
    let keys = store.activity_keys(&user.account.id).await?;
    let names = KeyNames::of(&store.list_keys(&user.account.id).await?);
    let retention = &user.state.settings.retention;
    let filtered = query.key_prefix.is_some() || query.status != StatusFilter::Any;
    let body = html! {
        h1 { "Activity" }
        @match retention.activity_age() {
            Some(age) => p.hint {
                "Requests made with this account's API keys, refused ones included, for "
                (kept_for(age)) " (at most "
                (layout::thousands(u64::from(retention.activity_rows))) " rows). A row stands for "
                "the requests of one kind in one minute; it appears within a few seconds. "
                "Requests with an unknown or revoked key name no account and are not shown."
            },
            None => p.notice.problem role="status" {
                "The relay's operator turned this record off ("
                code { "retention.activity = \"0\"" } "): no requests are recorded."
            },
        }
        (filter_form(&filters, &keys, &names))
        @if rows.is_empty() {
            p.muted {
                @if filtered { "No requests match these filters." }
                @else { "No requests yet. Send an event with one of your API keys and it shows here." }
            }
        } @else {
            (activity_table(&rows, &names))
            (pager(&filters, from, rows.len() as u32, total))
        }
    };
    user.page(Some(Nav::Activity), "Activity", body).await
}

/// The names of the account's live keys, by prefix (the activity record keeps the prefix).
struct KeyNames(HashMap<String, String>);

impl KeyNames {
    fn of(keys: &[ApiKeyInfo]) -> Self {
        Self(
            keys.iter()
                .filter_map(|key| Some((key.prefix.clone(), key.name.clone()?)))
                .collect(),
        )
    }

    fn get(&self, prefix: &str) -> Option<&str> {
        self.0.get(prefix).map(String::as_str)
    }
}

fn filter_form(filters: &Filters, keys: &[String], names: &KeyNames) -> Markup {
    let key = filters.key();
    let status = status_value(filters.status());
    let mut statuses: Vec<u16> = STATUSES.to_vec();
    if let StatusFilter::Exactly(code) = filters.status()
        && !statuses.contains(&code)
    {
        statuses.push(code);
        statuses.sort_unstable();
    }
    html! {
        form.row.filters method="get" action={ (PREFIX) "/activity" } {
            div {
                label for="filter-key" { "API key" }
                select #filter-key name="key" {
                    option value="" selected[key.is_none()] { "All keys" }
                    @for prefix in keys {
                        option value=(prefix) selected[key == Some(prefix.as_str())] {
                            @if let Some(name) = names.get(prefix) { (name) " (" (prefix) "…)" }
                            @else { (prefix) "…" }
                        }
                    }
                }
            }
            div {
                label for="filter-status" { "Status" }
                select #filter-status name="status" {
                    option value="" selected[status.is_none()] { "All" }
                    option value="accepted" selected[status.as_deref() == Some("accepted")] {
                        "Accepted"
                    }
                    option value="refused" selected[status.as_deref() == Some("refused")] {
                        "Refused (4xx and 5xx)"
                    }
                    @for code in statuses {
                        @let value = code.to_string();
                        option value=(value) selected[status.as_deref() == Some(value.as_str())] {
                            (code) " " (reason(code))
                        }
                    }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

fn activity_table(rows: &[ActivityRow], names: &KeyNames) -> Markup {
    layout::table(
        "Activity table",
        "activity",
        html! {
            tr {
                th scope="col" { "Last seen" }
                th scope="col" { "Request" }
                th scope="col" { "Status" }
                th scope="col" { "Message" }
                th.number scope="col" { "Count" }
                th scope="col" { "Key and client" }
            }
        },
        html! {
            @for row in rows {
                tr {
                    td { (layout::relative_time(row.last_at)) }
                    td {
                        span.cut title={ (row.method) " " (row.path) } {
                            code { (row.method) " " (row.path) }
                        }
                        @if let Some(category) = &row.category {
                            span.muted.cut title=(category) { "Category " (category) }
                        }
                    }
                    td { span class={ "badge " (status_class(row.status)) } { (row.status) } }
                    td {
                        @match &row.message {
                            Some(message) => span.cut title=(message) { (message) },
                            None => span.muted { "—" },
                        }
                    }
                    td.number { (layout::thousands(row.count)) }
                    td {
                        code { (row.key_prefix) "…" }
                        @if let Some(name) = names.get(&row.key_prefix) {
                            " " span.cut title=(name) { (name) }
                        }
                        br;
                        span.muted { (row.client.as_deref().unwrap_or("—")) }
                    }
                }
            }
        },
    )
}

/// "Rows 51–100 of 312, newest first", with links to the newer and older pages.
fn pager(filters: &Filters, from: u32, shown: u32, total: u64) -> Markup {
    let last = u64::from(from + shown);
    let older = last < total;
    html! {
        nav.pager.row aria-label="Pages" {
            span {
                "Rows " (layout::thousands(u64::from(from) + 1)) "\u{2013}" (layout::thousands(last))
                " of " (layout::thousands(total)) ", newest first"
            }
            @if from > 0 {
                a href=(filters.url(from.saturating_sub(PAGE_ROWS))) { "← Newer" }
            }
            @if older {
                a href=(filters.url(from + PAGE_ROWS)) rel="next" { "Older →" }
            }
        }
    }
}

/// How long the record keeps requests, in words: "7 days", "12 hours".
fn kept_for(age: std::time::Duration) -> String {
    let hours = age.as_secs() / 3600;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match hours {
        0 => plural(age.as_secs().div_ceil(60), "minute"),
        h if h % 24 == 0 => plural(h / 24, "day"),
        h => plural(h, "hour"),
    }
}

/// The badge colour of a status: through, slowed down, refused.
fn status_class(status: u16) -> &'static str {
    match status {
        0..=399 => "delivered",
        429 => "retrying",
        _ => "failed",
    }
}

fn reason(code: u16) -> &'static str {
    poem::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(key: Option<&str>, status: Option<&str>) -> Filters {
        Filters {
            key: key.map(str::to_string),
            status: status.map(str::to_string),
            from: None,
        }
    }

    #[test]
    fn statuses_are_read_from_the_address() {
        assert_eq!(filters(None, None).status(), StatusFilter::Any);
        assert_eq!(filters(None, Some("")).status(), StatusFilter::Any);
        assert_eq!(
            filters(None, Some("refused")).status(),
            StatusFilter::Refused
        );
        assert_eq!(
            filters(None, Some("429")).status(),
            StatusFilter::Exactly(429)
        );
        assert_eq!(filters(None, Some("42")).status(), StatusFilter::Any);
        assert_eq!(filters(None, Some("x")).status(), StatusFilter::Any);
    }

    #[test]
    fn the_time_kept_is_said_in_words() {
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        assert_eq!(kept_for(hours(7 * 24)), "7 days");
        assert_eq!(kept_for(hours(24)), "1 day");
        assert_eq!(kept_for(hours(36)), "36 hours");
        assert_eq!(kept_for(std::time::Duration::from_secs(90)), "2 minutes");
    }

    #[test]
    fn page_links_keep_the_filters() {
        assert_eq!(filters(None, None).url(0), "/dashboard/activity");
        assert_eq!(
            filters(Some("pk_ab"), Some("429")).url(50),
            "/dashboard/activity?key=pk_ab&status=429&from=50"
        );
        assert_eq!(filters(Some("a&b=c"), None).url(0), "/dashboard/activity");
        assert_eq!(
            filters(Some(" "), Some("refused")).url(0),
            "/dashboard/activity?status=refused"
        );
    }
}
