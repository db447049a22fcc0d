//! The overview: a card per category, the plan's category limit, a quick start that creates
//! three common categories, the create form, and deleting a category after a confirmation.
//! Creating goes through the API's own rule (`create_category`): same validation, limit and
//! messages.

use std::collections::BTreeMap;

use maud::{Markup, html};
use pingpilot_core::api::{NewCategory, ValidationFailure};
use pingpilot_core::model::{Category, Millis, now_millis};
use pingpilot_core::service::ServiceError;
use pingpilot_core::service::categories::{category_limit_message, create_category};
use pingpilot_core::service::health::FAILED_WINDOW_MS;
use poem::http::StatusCode;
use poem::web::{Form, Path, Query};
use poem::{Route, get, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::PREFIX;
use crate::layout::{self, Nav, NoticeKind, color_hex};
use crate::range::Range;
use crate::web::{CsrfOnly, DashError, PageResult, SignedIn, csrf_field, see_other};

pub fn routes(route: Route) -> Route {
    route
        .at("/", get(overview))
        .at("/categories", post(create))
        .at("/quick-start", post(quick_start))
        .at("/categories/:name/delete", get(confirm_delete).post(delete))
}

/// The colours offered in the create form, with their names.
const COLOURS: [(&str, &str); 10] = [
    ("#1C7ED6", "Blue"),
    ("#4263EB", "Indigo"),
    ("#9C36B5", "Purple"),
    ("#D6336C", "Pink"),
    ("#E03131", "Red"),
    ("#F76707", "Orange"),
    ("#FFB02E", "Amber"),
    ("#2F9E44", "Green"),
    ("#0CA678", "Teal"),
    ("#868E96", "Grey"),
];

/// The emoji offered in the create form; the empty value means none (notifications show 🔔).
const EMOJI: [(&str, &str); 12] = [
    ("", "🔔 None (bell)"),
    ("🐛", "🐛 Bug"),
    ("💰", "💰 Money"),
    ("🤔", "🤔 Question"),
    ("🚀", "🚀 Launch"),
    ("🎉", "🎉 Celebration"),
    ("⚠️", "⚠️ Warning"),
    ("🔥", "🔥 Fire"),
    ("👤", "👤 User"),
    ("📦", "📦 Package"),
    ("✅", "✅ Success"),
    ("❌", "❌ Failure"),
];

/// What quick start creates: name, colour, emoji.
const STARTERS: [(&str, &str, &str); 3] = [
    ("bug", "#E03131", "🐛"),
    ("sale", "#FFB02E", "💰"),
    ("question", "#4263EB", "🤔"),
];

/// A message for the overview after a form, chosen by fixed codes in the redirect's query.
#[derive(Debug, Default, Deserialize)]
struct Outcome {
    done: Option<String>,
    name: Option<String>,
    /// Quick start: comma-separated starter names.
    created: Option<String>,
    existing: Option<String>,
    refused: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// The palette's choice, `#RRGGBB`.
    #[serde(default)]
    color: String,
    /// Typed in; wins over the palette.
    #[serde(default)]
    custom_color: String,
    /// The palette's choice; empty for none.
    #[serde(default)]
    emoji: String,
    /// Typed in; wins over the palette.
    #[serde(default)]
    custom_emoji: String,
}

impl CreateForm {
    fn blank() -> Self {
        Self {
            color: COLOURS[0].0.into(),
            ..Self::default()
        }
    }

    /// The API's `NewCategory` body for what was entered.
    fn body(&self) -> Value {
        let mut body = json!({ "name": self.name.trim() });
        if let Some(color) = typed_or_chosen(&self.custom_color, &self.color) {
            body["color"] = color.into();
        }
        body["emoji"] =
            typed_or_chosen(&self.custom_emoji, &self.emoji).map_or(Value::Null, Value::from);
        body
    }
}

/// What was typed, else what was picked; `None` when both are blank.
fn typed_or_chosen<'a>(typed: &'a str, chosen: &'a str) -> Option<&'a str> {
    [typed.trim(), chosen.trim()]
        .into_iter()
        .find(|value| !value.is_empty())
}

#[handler]
async fn overview(user: SignedIn, Query(outcome): Query<Outcome>) -> PageResult {
    let notices = outcome_notices(&outcome, &user);
    render(&user, StatusCode::OK, notices, &CreateForm::blank()).await
}

#[handler]
async fn create(user: SignedIn, Form(form): Form<CreateForm>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    match create_from(&user, &form.body()).await? {
        Ok(category) => Ok(see_other(&format!(
            "{PREFIX}?done=created&name={}",
            category.name
        ))),
        Err(refusal) => {
            let notice = layout::notice(NoticeKind::Problem, refusal.message());
            render(&user, refusal.status(), vec![notice], &form).await
        }
    }
}

/// Why a category was not created, as the page says it.
enum NotCreated {
    Invalid(ValidationFailure),
    Duplicate(String),
    LimitReached(String),
}

impl NotCreated {
    /// The API's status for the same refusal: 422 invalid, 409 duplicate, 403 over the limit.
    fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Duplicate(_) => StatusCode::CONFLICT,
            Self::LimitReached(_) => StatusCode::FORBIDDEN,
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::Invalid(failure) => &failure.message,
            Self::Duplicate(message) | Self::LimitReached(message) => message,
        }
    }
}

/// Creates a category from the API's `NewCategory` body; a storage failure is the page's error.
async fn create_from(user: &SignedIn, body: &Value) -> PageResult<Result<Category, NotCreated>> {
    let new = match NewCategory::validate(body) {
        Ok(new) => new,
        Err(errors) => return Ok(Err(NotCreated::Invalid(ValidationFailure::new(errors)))),
    };
    match create_category(&user.state, &user.account, &new).await {
        Ok(category) => Ok(Ok(category)),
        Err(ServiceError::Duplicate(message)) => Ok(Err(NotCreated::Duplicate(message))),
        Err(ServiceError::LimitReached(message)) => Ok(Err(NotCreated::LimitReached(message))),
        Err(ServiceError::Store(err)) => Err(err.into()),
    }
}

#[handler]
async fn quick_start(user: SignedIn, Form(form): Form<CsrfOnly>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let mut created = Vec::new();
    let mut existing = Vec::new();
    let mut refused = Vec::new();
    for (name, color, emoji) in STARTERS {
        if !refused.is_empty() {
            refused.push(name);
            continue;
        }
        let body = json!({ "name": name, "color": color, "emoji": emoji });
        match create_from(&user, &body).await? {
            Ok(_) => created.push(name),
            Err(NotCreated::Duplicate(_)) => existing.push(name),
            Err(NotCreated::LimitReached(_)) => refused.push(name),
            Err(other) => {
                let notice = layout::notice(NoticeKind::Problem, other.message());
                return render(&user, other.status(), vec![notice], &CreateForm::blank()).await;
            }
        }
    }
    Ok(see_other(&format!(
        "{PREFIX}?done=quick-start&created={}&existing={}&refused={}",
        created.join(","),
        existing.join(","),
        refused.join(",")
    )))
}

#[handler]
async fn confirm_delete(user: SignedIn, Path(name): Path<String>) -> PageResult {
    let category = user
        .state
        .store()
        .category(&user.account.id, &name)
        .await?
        .ok_or(DashError::NotFound)?;
    let body = html! {
        h1 { "Delete the category " (category.name) "?" }
        div.card {
            p {
                @match category.events_count {
                    0 => "It has no events.",
                    1 => "Its event stays in the history, under the name it was sent with.",
                    n => { "Its " (n) " events stay in the history, under the name they were sent with." }
                }
            }
            p {
                "Events your apps send to " code { (category.name) } " from now on are refused "
                "(404) until you create the category again."
            }
            form method="post" action={ (PREFIX) "/categories/" (category.name) "/delete" } {
                (csrf_field(&user.csrf))
                div.row {
                    button.danger type="submit" { "Delete " (category.name) }
                    a.button href=(PREFIX) { "Cancel" }
                }
            }
        }
    };
    user.page(Some(Nav::Overview), "Delete a category", body)
        .await
}

#[handler]
async fn delete(
    user: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let deleted = user
        .state
        .store()
        .delete_category(&user.account.id, &name)
        .await?;
    if !deleted {
        return Err(DashError::NotFound);
    }
    Ok(see_other(&format!(
        "{PREFIX}?done=deleted&name={}",
        name.to_ascii_lowercase()
    )))
}

/// The overview with `notices` on top and the create form filled as `form`.
async fn render(
    user: &SignedIn,
    status: StatusCode,
    notices: Vec<Markup>,
    form: &CreateForm,
) -> PageResult {
    let store = user.state.store();
    let account = &user.account.id;
    let now = now_millis();
    let categories = store.categories(account).await?;
    let activity = Activity {
        this_month: store
            .category_counts_since(account, Range::Month.start_around(now))
            .await?,
        days: days_by_category(store.category_days_since(account, spark_start(now)).await?),
        failed: store
            .category_failures_since(account, now - FAILED_WINDOW_MS)
            .await?,
    };
    let limit = user.state.plan(&user.account.plan).categories;
    let full = limit.is_some_and(|limit| categories.len() as u64 >= limit);
    let body = html! {
        h1 { "Categories" }
        @for notice in &notices { (notice) }
        p.limits {
            (limit_text(categories.len(), limit, &user.account.plan))
            " · " a href={ (PREFIX) "/usage" } { "Usage" }
        }
        @if categories.is_empty() {
            p.card { "No categories yet. Events are filed under a category: start with the quick start below, or create your own." }
        } @else {
            div.cards { @for category in &categories { (card(category, &activity)) } }
        }
        (quick_start_form(user, &categories, limit))
        // Open when it is the way to start, or when it has something to say.
        details.add open[categories.is_empty() || !notices.is_empty() || !form.name.is_empty()] {
            summary.button { "Add a category" }
            (create_form(user, form, full.then_some(limit).flatten()))
        }
    };
    let mut response = user.page(Some(Nav::Overview), "Categories", body).await?;
    response.set_status(status);
    Ok(response)
}

/// `3 of 3 categories on the free plan`.
fn limit_text(used: usize, limit: Option<u64>, plan: &str) -> String {
    let noun = if used == 1 { "category" } else { "categories" };
    match limit {
        Some(limit) => format!("{used} of {limit} categories on the {plan} plan"),
        None => format!("{used} {noun} on the {plan} plan (no limit)"),
    }
}

/// Days in a card's small chart, today included.
const SPARK_DAYS: i64 = 14;

fn spark_start(now: Millis) -> Millis {
    now - SPARK_DAYS * DAY_MS
}

const DAY_MS: Millis = 86_400_000;

/// What the cards tell of each category, by name.
struct Activity {
    this_month: BTreeMap<String, i64>,
    /// Events per day, oldest day first, [`SPARK_DAYS`] of them.
    days: BTreeMap<String, Vec<i64>>,
    /// Failed deliveries of the last 24 hours' events.
    failed: BTreeMap<String, i64>,
}

fn days_by_category(rows: Vec<(String, i64, i64)>) -> BTreeMap<String, Vec<i64>> {
    let mut days: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (name, day, count) in rows {
        let counts = days
            .entry(name)
            .or_insert_with(|| vec![0; SPARK_DAYS as usize]);
        if let Some(slot) = usize::try_from(day)
            .ok()
            .and_then(|day| counts.get_mut(day))
        {
            *slot += count;
        }
    }
    days
}

/// A category at a glance: its events this month, when the last came, failed deliveries, and
/// its last two weeks as a small chart. Its colour runs along the top.
fn card(category: &Category, activity: &Activity) -> Markup {
    let color = color_hex(category.color);
    let link = format!("{PREFIX}/categories/{}", category.name);
    let this_month = activity
        .this_month
        .get(&category.name)
        .copied()
        .unwrap_or(0);
    let failed = activity.failed.get(&category.name).copied().unwrap_or(0);
    html! {
        article.card.category {
            svg.stripe viewBox="0 0 1 1" preserveAspectRatio="none" aria-hidden="true"
                focusable="false" { rect width="1" height="1" fill=(color) {} }
            h2 {
                span.emoji aria-hidden="true" { (category.emoji.as_deref().unwrap_or("🔔")) }
                " "
                a href=(link) { (category.name) }
            }
            p.count {
                strong { (layout::thousands(this_month.max(0) as u64)) }
                " " (if this_month == 1 { "event" } else { "events" }) " this month"
            }
            p.muted {
                @match category.last_ping {
                    Some(at) => { "Last " (layout::relative_time(at)) }
                    None => "No events yet",
                }
            }
            @if failed > 0 {
                p.failed {
                    a href=(link) {
                        (failed) " failed " (if failed == 1 { "delivery" } else { "deliveries" })
                        " in 24 hours"
                    }
                }
            }
            (sparkline(activity.days.get(&category.name)))
            div.row {
                a.button href=(link) { "Open" span.visually-hidden { " " (category.name) } }
                a.button.danger href={ (link) "/delete" } {
                    "Delete…" span.visually-hidden { " " (category.name) }
                }
            }
        }
    }
}

/// Events per day over the last two weeks, as bars; its label says the total.
fn sparkline(days: Option<&Vec<i64>>) -> Markup {
    let zeros = vec![0; SPARK_DAYS as usize];
    let days = days.unwrap_or(&zeros);
    let total: i64 = days.iter().sum();
    let top = days.iter().copied().max().unwrap_or(0).max(1);
    let label = format!("{total} events in the last {SPARK_DAYS} days");
    html! {
        svg.spark viewBox={ "0 0 " (SPARK_DAYS * 10) " 30" } preserveAspectRatio="none"
            role="img" aria-label=(label) {
            rect.base x="0" y="29" width=(SPARK_DAYS * 10) height="1" {}
            @for (day, count) in days.iter().enumerate() {
                @let height = (*count as f64 / top as f64 * 28.0).max(if *count > 0 { 2.0 } else { 0.0 });
                rect x=(day * 10 + 1) y=(format!("{:.1}", 30.0 - height)) width="8"
                    height=(format!("{height:.1}")) {}
            }
        }
    }
}

fn quick_start_form(user: &SignedIn, categories: &[Category], limit: Option<u64>) -> Markup {
    let missing: Vec<&str> = STARTERS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| !categories.iter().any(|c| c.name == *name))
        .collect();
    let room = limit.map(|limit| limit.saturating_sub(categories.len() as u64) as usize);
    html! {
        // Once all three are there, it has done its job and goes.
        @if !missing.is_empty() {
        section.card.quick-start aria-labelledby="quick-start" {
            h2 #quick-start { "Quick start" }
            p {
                "Creates " strong { "bug 🐛" } ", " strong { "sale 💰" } " and "
                strong { "question 🤔" } ", skipping the ones you already have."
            }
            @if room == Some(0) {
                p.hint { "Your plan has no room for another category." }
            } @else if let Some(room) = room.filter(|room| *room < missing.len()) {
                p.hint {
                    "Only " (room) " more fit in your plan: " (missing[..room].join(", "))
                    " would be created, not " (missing[room..].join(", ")) "."
                }
            }
            form method="post" action={ (PREFIX) "/quick-start" } {
                (csrf_field(&user.csrf))
                button.primary type="submit" disabled[room == Some(0)] {
                    "Create the starter categories"
                }
            }
        }
        }
    }
}

/// The create form; `full` is the plan's limit when it is reached.
fn create_form(user: &SignedIn, form: &CreateForm, full: Option<u64>) -> Markup {
    let typed_color = form.custom_color.trim();
    let typed_emoji = form.custom_emoji.trim();
    html! {
        form.card.create method="post" action={ (PREFIX) "/categories" } aria-labelledby="create" {
            h2 #create { "Create a category" }
            @if let Some(limit) = full {
                p.hint role="note" {
                    (category_limit_message(limit))
                    " Delete a category to make room, or ask the operator for a bigger plan."
                }
            }
            (csrf_field(&user.csrf))
            label for="name" { "Name" }
            input #name type="text" name="name" value=(form.name) required maxlength="64"
                pattern="[A-Za-z0-9\\-]{1,64}" aria-describedby="name-hint" autocomplete="off";
            p.hint #name-hint {
                "1 to 64 letters, digits or hyphens; stored in lower case. Your apps send it as "
                code { "category" } "."
            }
            fieldset.palette {
                legend { "Colour" }
                @for (hex, colour_name) in COLOURS {
                    label.choice {
                        input type="radio" name="color" value=(hex)
                            checked[typed_color.is_empty() && form.color.eq_ignore_ascii_case(hex)];
                        (layout::swatch(hex, None))
                        " " (colour_name)
                    }
                }
                label for="custom_color" { "Or another colour, #RRGGBB" }
                input #custom_color type="text" name="custom_color" value=(typed_color)
                    placeholder="#12AB34" maxlength="7" aria-describedby="color-hint"
                    autocomplete="off";
                p.hint #color-hint { "A colour typed here wins over the palette." }
            }
            fieldset.palette {
                legend { "Emoji" }
                @for (emoji, emoji_name) in EMOJI {
                    label.choice {
                        input type="radio" name="emoji" value=(emoji)
                            checked[typed_emoji.is_empty() && form.emoji == emoji];
                        " " (emoji_name)
                    }
                }
                label for="custom_emoji" { "Or another emoji" }
                input #custom_emoji type="text" name="custom_emoji" value=(typed_emoji)
                    maxlength="16" aria-describedby="emoji-hint" autocomplete="off";
                p.hint #emoji-hint { "Shown before the category's name in notifications." }
            }
            button.primary type="submit" disabled[full.is_some()] { "Create category" }
        }
    }
}

/// The notices a redirect's outcome codes stand for; unknown codes show nothing.
fn outcome_notices(outcome: &Outcome, user: &SignedIn) -> Vec<Markup> {
    let name = outcome
        .name
        .as_deref()
        .filter(|name| is_category_name(name));
    match (outcome.done.as_deref(), name) {
        (Some("created"), Some(name)) => vec![layout::notice(
            NoticeKind::Done,
            &format!("Category {name} created."),
        )],
        (Some("deleted"), Some(name)) => vec![layout::notice(
            NoticeKind::Done,
            &format!("Category {name} deleted; its events stay in the history."),
        )],
        (Some("quick-start"), _) => quick_start_notices(outcome, user),
        _ => Vec::new(),
    }
}

fn quick_start_notices(outcome: &Outcome, user: &SignedIn) -> Vec<Markup> {
    let created = starters_in(outcome.created.as_deref());
    let existing = starters_in(outcome.existing.as_deref());
    let refused = starters_in(outcome.refused.as_deref());
    let mut done = Vec::new();
    if !created.is_empty() {
        done.push(format!("Created {}.", created.join(", ")));
    }
    if !existing.is_empty() {
        done.push(format!("Already there: {}.", existing.join(", ")));
    }
    let mut notices = Vec::new();
    if !done.is_empty() {
        notices.push(layout::notice(NoticeKind::Done, &done.join(" ")));
    }
    if !refused.is_empty() {
        let limit = user
            .state
            .plan(&user.account.plan)
            .categories
            .unwrap_or_default();
        notices.push(layout::notice(
            NoticeKind::Problem,
            &format!(
                "Not created: {}. {}",
                refused.join(", "),
                category_limit_message(limit)
            ),
        ));
    }
    notices
}

/// The quick start names listed in `text`, in quick start order (nothing else is echoed).
fn starters_in(text: Option<&str>) -> Vec<&'static str> {
    let listed: Vec<&str> = text.unwrap_or_default().split(',').collect();
    STARTERS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| listed.contains(name))
        .collect()
}

fn is_category_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_win_over_the_palette() {
        let form = CreateForm {
            name: " Deploys ".into(),
            color: "#1C7ED6".into(),
            custom_color: "#123456".into(),
            emoji: "🐛".into(),
            ..CreateForm::default()
        };
        assert_eq!(
            form.body(),
            json!({"name": "Deploys", "color": "#123456", "emoji": "🐛"})
        );
        let bare = CreateForm {
            name: "x".into(),
            ..CreateForm::default()
        };
        assert_eq!(bare.body(), json!({"name": "x", "emoji": null}));
    }

    #[test]
    fn limits_read_naturally() {
        assert_eq!(
            limit_text(3, Some(3), "free"),
            "3 of 3 categories on the free plan"
        );
        assert_eq!(
            limit_text(1, None, "pro"),
            "1 category on the pro plan (no limit)"
        );
    }

    #[test]
    fn only_starter_names_are_echoed() {
        assert_eq!(starters_in(Some("question,evil,bug")), ["bug", "question"]);
        assert!(starters_in(None).is_empty());
        assert!(is_category_name("sale-2"));
        assert!(!is_category_name("<b>"));
    }
}
