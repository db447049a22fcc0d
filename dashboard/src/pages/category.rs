//! A category's page: Today / This week / This month, the totals and numeric sums over the
//! range, a chart of events per hour or day, and the events table, newest first, 25 a page.
//! The first page refreshes itself through htmx (`/categories/:name/events`, every 3 s) so new
//! events and delivery results show up; without JavaScript it shows everything at load.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use maud::{Markup, html};
use pingpilot_core::api::CategoryPatch;
use pingpilot_core::model::{Category, EventId, EventRecord, now_millis};
use pingpilot_core::service::activity::{Refused, refused_events};
use pingpilot_core::service::health::FAILED_WINDOW_MS;
use pingpilot_core::store::{CategoryUpdate, DeliveryBadge, EventFilter};
use poem::http::StatusCode;
use poem::web::{Data, Form, Html, Path, Query};
use poem::{IntoResponse, Request, Route, get, handler, post};
use serde::Deserialize;
use serde_json::Value;

use crate::PREFIX;
use crate::chart;
use crate::events_table::{events_table, field_columns};
use crate::layout::NoticeKind;
use crate::layout::{self, Nav};
use crate::range::{Range, Window};
use crate::range_stats::{RangeStats, StatsCache};
use crate::web::{DashError, PageResult, SignedIn, csrf_field, see_other};

/// Events per page of the table.
const PAGE_SIZE: u32 = 25;
/// How often the first page asks for news.
const POLL_EVERY: &str = "every 3s";

pub fn routes(route: Route) -> Route {
    route
        .at("/categories/:name", get(category_page))
        .at("/categories/:name/events", get(live_events))
        .at("/categories/:name/channels", post(save_channels))
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    range: Option<String>,
    /// The id of the last event of the previous page.
    before: Option<String>,
    /// The fingerprint of what the browser shows (fragment only).
    seen: Option<String>,
    /// `channels` after the channels were saved.
    done: Option<String>,
}

/// Everything the page shows about a category over one range.
struct Summary {
    category: Category,
    window: Window,
    /// The range's count, times and sums (kept between requests: see `range_stats.rs`).
    stats: Arc<RangeStats>,
    /// This page of the table, newest first.
    events: Vec<EventRecord>,
    badges: BTreeMap<EventId, Vec<DeliveryBadge>>,
    /// The `before` of the next (older) page, when there is one.
    older: Option<EventId>,
    /// Whether this is an older page (no live refresh there).
    paged: bool,
    /// Events sent here are being refused: none got through since.
    refused: Option<Refused>,
    /// The numeric fields whose sums the reader chose; `None`: the first few.
    chosen: Option<Vec<String>>,
}

/// Sums shown when the reader chose none.
const DEFAULT_SUMS: usize = 3;

/// The sums the reader chose, from `?pick=1&sum=amount&sum=seats` (`pick` alone: none);
/// `None` when the address chooses nothing.
fn chosen_sums(req: &Request) -> Option<Vec<String>> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or_default()).unwrap_or_default();
    pairs.iter().any(|(key, _)| key == "pick").then(|| {
        pairs
            .into_iter()
            .filter(|(key, _)| key == "sum")
            .map(|(_, field)| field)
            .collect()
    })
}

/// The choice of sums as it travels in the page's links: `&pick=1&sum=…`, or nothing.
fn sums_query(chosen: &Option<Vec<String>>) -> String {
    let Some(fields) = chosen else {
        return String::new();
    };
    let mut pairs = vec![("pick", "1")];
    pairs.extend(fields.iter().map(|field| ("sum", field.as_str())));
    format!(
        "&{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

impl Summary {
    /// The sums shown: those chosen, or the first few numeric fields in the table's column
    /// order (then by name).
    fn shown_sums(&self) -> Vec<(String, f64)> {
        let sums = &self.stats.sums;
        let names: Vec<String> = match &self.chosen {
            Some(fields) => fields.clone(),
            None => {
                let mut names: Vec<String> = field_columns(&self.events)
                    .into_iter()
                    .filter(|name| sums.contains_key(name))
                    .collect();
                for name in sums.keys() {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                names.truncate(DEFAULT_SUMS);
                names
            }
        };
        names
            .into_iter()
            .filter_map(|name| sums.get(&name).map(|sum| (name, *sum)))
            .collect()
    }
}

#[handler]
async fn category_page(
    req: &Request,
    user: SignedIn,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
    Data(stats): Data<&Arc<StatsCache>>,
) -> PageResult {
    let notice = (query.done.as_deref() == Some("channels"))
        .then(|| layout::notice(NoticeKind::Done, "The category's channels are saved."));
    let view = View {
        query,
        chosen: chosen_sums(req),
    };
    render_page(&user, stats, &name, view, notice).await
}

/// What the address asks the page for.
#[derive(Default)]
struct View {
    query: PageQuery,
    chosen: Option<Vec<String>>,
}

/// The page, with a notice above the channels when there is one.
async fn render_page(
    user: &SignedIn,
    stats: &StatsCache,
    name: &str,
    View { query, chosen }: View,
    notice: Option<Markup>,
) -> PageResult {
    let range = Range::from_query(query.range.as_deref());
    let summary = summarise(user, stats, name, range, query.before, chosen).await?;
    let category = &summary.category;
    let title = format!("Category {}", category.name);
    let body = html! {
        p { a href=(PREFIX) { "← Categories" } }
        h1 {
            span aria-hidden="true" { (category.emoji.as_deref().unwrap_or("🔔")) }
            " " (category.name) " "
            @let hex = layout::color_hex(category.color);
            (layout::swatch(&hex, Some(&hex)))
        }
        nav.tabs aria-label="Time range" {
            @for tab in Range::ALL {
                @let href = format!(
                    "{PREFIX}/categories/{}?range={}{}",
                    category.name,
                    tab.query(),
                    sums_query(&summary.chosen)
                );
                @if tab == range {
                    a href=(href) aria-current="page" { (tab.label()) }
                } @else {
                    a href=(href) { (tab.label()) }
                }
            }
        }
        p.hint { (summary.window.describe()) ". Weeks start on Monday; times are UTC." }
        (live_section(user, &summary))
        (sums_picker(&summary))
        @if let Some(notice) = notice { (notice) }
        (channels_form(user, category))
    };
    user.page(Some(Nav::Overview), &title, body).await
}

/// Where the category's events go: every channel the account has on, or the ones ticked.
fn channels_form(user: &SignedIn, category: &Category) -> Markup {
    let providers = &user.state.providers;
    let routed = category.channels.as_deref();
    let on: Vec<&str> = providers
        .iter()
        .filter(|p| p.registration.enabled_for(&user.account))
        .map(|p| p.registration.display_name)
        .collect();
    let on = if on.is_empty() {
        "none".to_string()
    } else {
        on.join(", ")
    };
    html! {
        form.card.routes method="post" action={ (PREFIX) "/categories/" (category.name) "/channels" }
            aria-labelledby="routes-title" {
            (csrf_field(&user.csrf))
            h2 #routes-title { "Channels" }
            p.hint { "Where this category's events are sent. A channel must also be on in "
                a href={ (PREFIX) "/settings" } { "Settings" } "." }
            fieldset.plain {
                legend.visually-hidden { "Channels of this category" }
                div.switch {
                    input #route-all type="radio" name="route" value="all" checked[routed.is_none()];
                    label for="route-all" { "Every channel you have on (now: " (on) ")" }
                }
                div.switch {
                    input #route-some type="radio" name="route" value="some" checked[routed.is_some()];
                    label for="route-some" { "Only these channels:" }
                }
                @for entry in providers {
                    @let id = entry.registration.id;
                    @let box_id = format!("channel-{id}");
                    div.switch.nested {
                        input #(box_id) type="checkbox" name="channel" value=(id)
                            checked[routed.is_some_and(|ids| ids.iter().any(|c| c == id))];
                        label for=(box_id) { (entry.registration.display_name) }
                    }
                }
            }
            button type="submit" { "Save channels" }
        }
    }
}

/// The `PATCH /categories/{name}` body the channels form stands for.
fn channels_body(pairs: &[(String, String)]) -> Value {
    let route = pairs.iter().rev().find(|(key, _)| key == "route");
    if route.is_some_and(|(_, value)| value == "some") {
        let ticked: Vec<&str> = pairs
            .iter()
            .filter(|(key, _)| key == "channel")
            .map(|(_, value)| value.as_str())
            .collect();
        serde_json::json!({ "channels": ticked })
    } else {
        serde_json::json!({ "channels": null })
    }
}

#[handler]
async fn save_channels(
    user: SignedIn,
    Path(name): Path<String>,
    Data(stats): Data<&Arc<StatsCache>>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> PageResult {
    let csrf = pairs
        .iter()
        .find(|(key, _)| key == "csrf")
        .map(|(_, v)| v.as_str());
    user.check_csrf(csrf.unwrap_or_default())?;
    let changes = match CategoryPatch::validate(&channels_body(&pairs)) {
        Ok(changes) => changes,
        Err(_) => {
            let notice = layout::notice(
                NoticeKind::Problem,
                "Tick at least one channel, or choose every channel you have on.",
            );
            let page = render_page(&user, stats, &name, View::default(), Some(notice)).await?;
            return Ok(page
                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response());
        }
    };
    match user
        .state
        .store()
        .update_category(&user.account.id, &name, &changes)
        .await?
    {
        CategoryUpdate::Updated(category) => Ok(see_other(&format!(
            "{PREFIX}/categories/{}?done=channels",
            category.name
        ))),
        CategoryUpdate::NotFound | CategoryUpdate::Duplicate => Err(DashError::NotFound),
    }
}

/// The live part of the first page, for htmx: 204 when nothing changed since `seen`.
#[handler]
async fn live_events(
    req: &Request,
    user: SignedIn,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
    Data(stats): Data<&Arc<StatsCache>>,
) -> PageResult {
    let range = Range::from_query(query.range.as_deref());
    let summary = summarise(&user, stats, &name, range, None, chosen_sums(req)).await?;
    let content = live_content(&user, &summary);
    if query.seen.as_deref() == Some(fingerprint(&content).as_str()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Html(live_wrapper(&summary, content).into_string()).into_response())
}

async fn summarise(
    user: &SignedIn,
    stats: &StatsCache,
    name: &str,
    range: Range,
    before: Option<String>,
    chosen: Option<Vec<String>>,
) -> PageResult<Summary> {
    let store = user.state.store();
    let account = &user.account.id;
    let category = store
        .category(account, name)
        .await?
        .ok_or(DashError::NotFound)?;
    let window = Window::around(range, now_millis());
    let stats = stats
        .stats(store, account, &category.name, (window.start, window.end))
        .await?;
    let before = before.filter(|id| !id.is_empty());
    let paged = before.is_some();
    let filter = EventFilter {
        category: Some(category.name.clone()),
        since: Some(window.start),
        until: Some(window.end),
        before_id: before,
        // One more than shown tells whether an older page exists.
        limit: PAGE_SIZE + 1,
        ..EventFilter::default()
    };
    let mut events = store.events(account, &filter).await?;
    let older = if events.len() > PAGE_SIZE as usize {
        events.truncate(PAGE_SIZE as usize);
        events.last().map(|event| event.id.clone())
    } else {
        None
    };
    let ids: Vec<EventId> = events.iter().map(|event| event.id.clone()).collect();
    let badges = store.delivery_badges(account, &ids).await?;
    let refused = refused_events(&user.state, account, now_millis() - FAILED_WINDOW_MS)
        .await?
        .into_iter()
        .find(|refused| {
            refused
                .category
                .as_ref()
                .is_some_and(|sent| sent.to_lowercase() == category.name.to_lowercase())
        });
    Ok(Summary {
        category,
        window,
        stats,
        events,
        badges,
        older,
        paged,
        refused,
        chosen,
    })
}

/// The live section: polled on the first page, still on older ones.
fn live_section(user: &SignedIn, summary: &Summary) -> Markup {
    let content = live_content(user, summary);
    if summary.paged {
        html! { section #live aria-label="Events" { (content) } }
    } else {
        live_wrapper(summary, content)
    }
}

/// `content` in the element that asks for a newer version of itself every few seconds.
fn live_wrapper(summary: &Summary, content: Markup) -> Markup {
    let poll = format!(
        "{PREFIX}/categories/{}/events?range={}{}&seen={}",
        summary.category.name,
        summary.window.range.query(),
        sums_query(&summary.chosen),
        fingerprint(&content)
    );
    html! {
        section #live aria-label="Events" hx-get=(poll) hx-trigger=(POLL_EVERY) hx-swap="outerHTML" {
            (content)
        }
    }
}

/// Identifies what the live section shows, so that polling swaps only when it changed.
fn fingerprint(content: &Markup) -> String {
    let mut hasher = DefaultHasher::new();
    content.0.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn live_content(user: &SignedIn, summary: &Summary) -> Markup {
    let range = summary.window.range;
    html! {
        @if let Some(refused) = &summary.refused { (refused_notice(refused)) }
        @if summary.stats.count() == 0 && summary.events.is_empty() && !summary.paged {
            (empty_state(user, summary))
        } @else {
            (totals(summary))
            (events_chart(summary))
            h2 { "Events" }
            @if summary.events.is_empty() {
                p.muted { "No older events in this range." }
            } @else {
                (events_table(user, &summary.events, &summary.badges, false))
            }
            @if summary.paged || summary.older.is_some() {
                nav.pager.row aria-label="Pages" {
                    span { (page_position(summary)) }
                    @if summary.paged {
                        a href={ (PREFIX) "/categories/" (summary.category.name) "?range="
                            (range.query()) (sums_query(&summary.chosen)) } { "← Newest events" }
                    }
                    @if let Some(before) = &summary.older {
                        a href={ (PREFIX) "/categories/" (summary.category.name) "?range="
                            (range.query()) (sums_query(&summary.chosen)) "&before=" (before) }
                            rel="next" { "Older events →" }
                    }
                }
            }
        }
    }
}

/// Says that events sent here are refused, with the relay's answer and where to see them.
fn refused_notice(refused: &Refused) -> Markup {
    html! {
        div.notice.problem role="alert" {
            strong { "Events sent to this category are being refused." }
            " The relay answers " (refused.status) " \u{201c}" (refused.message) "\u{201d}: "
            (match refused.count {
                1 => "once".to_string(),
                n => format!("{} times", layout::thousands(n)),
            })
            " in the last 24 hours, the latest " (layout::relative_time(refused.last_at)) ". "
            a href={ (PREFIX) "/activity?status=refused" } { "See activity" }
        }
    }
}

/// Where this page is among the range's events: "Events 26–50 of 73, newest first".
fn page_position(summary: &Summary) -> String {
    let total = summary.stats.times.len();
    let newer = summary.events.first().map_or(0, |first| {
        summary
            .stats
            .times
            .iter()
            .filter(|at| **at > first.created_at)
            .count()
    });
    let last = (newer + summary.events.len()).min(total);
    format!(
        "Events {}\u{2013}{} of {}, newest first",
        layout::thousands((newer + 1).min(last) as u64),
        layout::thousands(last as u64),
        layout::thousands(total as u64)
    )
}

fn empty_state(user: &SignedIn, summary: &Summary) -> Markup {
    let category = &summary.category;
    let settings = &user.state.settings;
    let base = settings.dashboard.base_url(settings.server.bind);
    html! {
        div.card.empty {
            @if summary.refused.is_some() {
                h2 { "No event has got through" }
            } @else if category.last_ping.is_none() {
                h2 { "Waiting for the first event" }
            } @else {
                h2 { "No events " (summary.window.range.label().to_lowercase()) }
            }
            p { "Send one from your app or a terminal; put one of your API keys in place of "
                code { "YOUR_API_KEY" } ":" }
            pre { code { (curl_command(&base, &category.name)) } }
            p.waiting role="status" {
                "Listening for events… This page shows them as they arrive."
                noscript { " (Without JavaScript: reload the page after sending.)" }
            }
        }
    }
}

/// A ready-to-paste command that sends an event to `category`.
fn curl_command(base: &str, category: &str) -> String {
    format!(
        "curl -X POST {base}/api/v1/event \\\n  -H \"Authorization: Bearer YOUR_API_KEY\" \\\n  \
         -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"category\":\"{category}\",\"description\":\"Something happened\",\
         \"fields\":{{\"amount\":12.5,\"plan\":\"pro\"}}}}'"
    )
}

fn totals(summary: &Summary) -> Markup {
    html! {
        dl.totals {
            div {
                dt { "Events" }
                dd { (layout::thousands(summary.stats.count())) }
            }
            @for (field, sum) in summary.shown_sums() {
                div {
                    dt { "Sum of " (field) }
                    dd { (format_number(sum)) }
                }
            }
        }
    }
}

/// Which numeric fields are summed, chosen with boxes (a GET form: the choice is in the
/// address). Outside the live section, so a refresh never closes it while open.
fn sums_picker(summary: &Summary) -> Markup {
    let shown: Vec<String> = summary
        .shown_sums()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    html! {
        @if !summary.stats.sums.is_empty() {
            details.sums {
                summary { "Choose the sums (" (summary.stats.sums.len()) " number fields)" }
                form method="get" action={ (PREFIX) "/categories/" (summary.category.name) } {
                    input type="hidden" name="range" value=(summary.window.range.query());
                    input type="hidden" name="pick" value="1";
                    fieldset {
                        legend.visually-hidden { "Fields to sum" }
                        @for field in summary.stats.sums.keys() {
                            label.choice {
                                input type="checkbox" name="sum" value=(field)
                                    checked[shown.contains(field)];
                                (field)
                            }
                        }
                    }
                    button type="submit" { "Show these sums" }
                }
            }
        }
    }
}

fn events_chart(summary: &Summary) -> Markup {
    let window = &summary.window;
    chart::window_chart(window, &window.counts(summary.stats.times.iter().copied()))
}

/// A sum without float noise: `20`, `0.3`, `1234.56`.
/// A sum as people read it: at most six decimals, none trailing, thousands separated
/// (`1,234.56`).
fn format_number(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        return "0".into();
    }
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let whole = whole
        .parse::<u64>()
        .map_or_else(|_| whole.to_string(), layout::thousands);
    match fraction {
        "" => format!("{sign}{whole}"),
        fraction => format!("{sign}{whole}.{fraction}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_read_cleanly() {
        assert_eq!(format_number(20.0), "20");
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(1234.56), "1,234.56");
        assert_eq!(format_number(1_234_567.0), "1,234,567");
        assert_eq!(format_number(-98_765.5), "-98,765.5");
        assert_eq!(format_number(-2.5), "-2.5");
        assert_eq!(format_number(-0.0000001), "0");
    }

    #[test]
    fn event_times_show_seconds() {
        let text = layout::relative_time(1_764_334_805_123).into_string();
        assert!(text.contains(">2025-11-28 13:00:05 UTC<"), "{text}");
        assert!(
            text.contains(r#"datetime="2025-11-28T13:00:05.123Z""#),
            "{text}"
        );
    }

    #[test]
    fn the_curl_command_sends_to_the_category() {
        let command = curl_command("http://localhost:8080", "sale");
        assert!(command.starts_with("curl -X POST http://localhost:8080/api/v1/event"));
        assert!(command.contains(r#"-H "Authorization: Bearer YOUR_API_KEY""#));
        let body = command.split('\'').nth(1).expect("quoted body");
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["category"], "sale");
        assert!(body["fields"].is_object() && body["description"].is_string());
    }
}
