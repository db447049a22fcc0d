//! The page shell (head, navigation, sign-out) and small pieces every page uses.

use maud::{DOCTYPE, Markup, html};
use pingpilot_core::model::{DeliveryStatus, Millis, to_datetime};
use pingpilot_core::service::health::Attention;
use poem::web::Html;
use poem::{IntoResponse, Response};

use crate::PREFIX;

/// The navigation entries; the current one is marked for screen readers and styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Events,
    Activity,
    Usage,
    Keys,
    Settings,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 6] = [
        (Nav::Overview, "", "Overview"),
        (Nav::Events, "/events", "Events"),
        (Nav::Activity, "/activity", "Activity"),
        (Nav::Usage, "/usage", "Usage"),
        (Nav::Keys, "/keys", "API keys"),
        (Nav::Settings, "/settings", "Settings"),
    ];
}

/// The colour theme a reader chose with the header's switch; `Auto` follows the system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    Auto,
    Dark,
    Light,
}

impl Theme {
    /// The cookie that keeps the choice.
    pub const COOKIE: &'static str = "pp_theme";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "dark" => Some(Self::Dark),
            "light" => Some(Self::Light),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Dark => "dark",
            Self::Light => "light",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Auto => "Auto",
            Self::Dark => "Dark",
            Self::Light => "Light",
        }
    }

    /// What the switch offers next: auto, dark, light, auto, …
    fn next(self) -> Self {
        match self {
            Self::Auto => Self::Dark,
            Self::Dark => Self::Light,
            Self::Light => Self::Auto,
        }
    }

    /// `<html data-theme>`: absent for auto, which the style sheet leaves to the system.
    fn attribute(self) -> Option<&'static str> {
        (self != Self::Auto).then(|| self.as_str())
    }
}

/// The whole document: head (styles, htmx) and `body`'s content.
fn document(title: &str, theme: Theme, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" data-theme=[theme.attribute()] {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · PingPilot" }
                    link rel="stylesheet" href={ (PREFIX) "/assets/dashboard.css" };
                    link rel="icon" type="image/svg+xml" href={ (PREFIX) "/assets/favicon.svg" };
                    // The content security policy allows no inline style (htmx would add one
                    // for its request indicators, which no page uses) and no eval.
                    meta name="htmx-config"
                        content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                    script src={ (PREFIX) "/assets/htmx.min.js" } defer {}
                    script src={ (PREFIX) "/assets/local-time.js" } defer {}
                    script src={ (PREFIX) "/assets/keep-scroll.js" } defer {}
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}

const BRAND: &str = "🛩️ PingPilot";

/// A page without navigation: sign-in and error pages, in the system's theme.
pub fn bare(title: &str, body: Markup) -> Html<String> {
    document(
        title,
        Theme::Auto,
        html! {
            header.top { a.brand href=(PREFIX) { (BRAND) } }
            main.narrow { (body) }
        },
    )
}

/// Who a signed-in page is for: the account its header names, and the token its forms carry.
pub trait Viewer {
    fn account_name(&self) -> &str;
    fn csrf(&self) -> &str;
    fn theme(&self) -> Theme;
}

/// The hidden field every form of a signed-in page carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A signed-in page: navigation, the account's name, sign-out, what needs action, then `body`.
pub fn page(
    user: &impl Viewer,
    attention: &[Attention],
    active: Option<Nav>,
    title: &str,
    body: Markup,
) -> Response {
    let theme = user.theme();
    document(
        title,
        theme,
        html! {
            a.skip href="#main" { "Skip to content" }
            header.top {
                a.brand href=(PREFIX) { (BRAND) }
                nav aria-label="Main" {
                    ul {
                        @for (nav, path, label) in Nav::ALL {
                            li {
                                @if Some(nav) == active {
                                    a href={ (PREFIX) (path) } aria-current="page" { (label) }
                                } @else {
                                    a href={ (PREFIX) (path) } { (label) }
                                }
                            }
                        }
                    }
                }
                form.theme method="post" action={ (PREFIX) "/theme" } {
                    (csrf_field(user.csrf()))
                    button type="submit" name="theme" value=(theme.next().as_str())
                        aria-label={ "Colour theme: " (theme.label()) ". Switch to " (theme.next().label()) }
                    { "Theme: " (theme.label()) }
                }
                form.signout method="post" action={ (PREFIX) "/logout" } {
                    (csrf_field(user.csrf()))
                    span.who { (user.account_name()) }
                    button type="submit" { "Sign out" }
                }
            }
            main #main {
                (attention_banner(attention))
                (body)
            }
        },
    )
    .into_response()
}

/// What needs action, each with the page that fixes it; nothing when all is well.
pub fn attention_banner(items: &[Attention]) -> Markup {
    html! {
        @if !items.is_empty() {
            section.attention aria-labelledby="attention-title" {
                h2 #attention-title.visually-hidden { "Needs your attention" }
                ul {
                    @for item in items {
                        @let (text, fix, label) = attention_text(item);
                        li class=(if item.blocks_events() { "blocking" } else { "warning" }) {
                            span { (text) }
                            " "
                            a href={ (PREFIX) (fix) } { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// An item's sentence, and the page (under the dashboard) and link text that fix it.
fn attention_text(item: &Attention) -> (String, &'static str, &'static str) {
    match item {
        Attention::EventsRefused { message } => (
            format!("Every event is refused with: \u{201c}{message}\u{201d}"),
            "/settings",
            "Fix it in Settings",
        ),
        Attention::CategoryRefused {
            category,
            status,
            message,
            count,
        } => (
            format!(
                "{} refused with {status} \u{201c}{message}\u{201d}, {} in the last 24 hours.",
                match category {
                    Some(name) => format!("Events sent to \u{201c}{name}\u{201d} are"),
                    None => "Events without a valid category are".to_string(),
                },
                match count {
                    1 => "once".to_string(),
                    n => format!("{} times", thousands(*n)),
                },
            ),
            "/activity?status=refused",
            "See activity",
        ),
        Attention::RateLimited { count } => (
            format!(
                "{} {} slowed down (429) in the last hour: your app sends faster than the plan \
                 allows.",
                thousands(*count),
                if *count == 1 {
                    "event was"
                } else {
                    "events were"
                }
            ),
            "/activity?status=429",
            "See activity",
        ),
        Attention::QuotaReached { limit, resets_at } => (
            format!(
                "This month's {} events are used up: new events are refused until {}.",
                thousands(*limit),
                resets_at.format("%-d %B %Y")
            ),
            "/usage",
            "See usage",
        ),
        Attention::QuotaNearlyUsed { used, limit } => (
            format!(
                "{} of this month's {} events are used ({} %).",
                thousands(*used),
                thousands(*limit),
                used * 100 / (*limit).max(1)
            ),
            "/usage",
            "See usage",
        ),
        Attention::DeliveriesFailed { count } => (
            format!(
                "{} {} failed in the last 24 hours.",
                thousands(*count),
                if *count == 1 {
                    "delivery"
                } else {
                    "deliveries"
                }
            ),
            "",
            "See your categories",
        ),
        Attention::ChannelWaiting { channel, reason } => (
            format!(
                "{channel} notifications are held: {}",
                without_links(reason)
            ),
            "/settings",
            "Open Settings",
        ),
    }
}

/// `text` with each web address in it said as "the link in Settings": a provider's reason may
/// carry a long one-time link, which Settings shows as a button.
pub fn without_links(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.starts_with("https://") || word.starts_with("http://") {
                "the link in Settings"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A table in a named region of its own, which scrolls sideways when the table is wider than
/// the screen and takes the keyboard's focus so that it scrolls by keyboard too; `label` names
/// the region and is the table's caption for screen readers. `head` is the header row, `rows`
/// the body's; `class` styles the table (empty: none).
pub fn table(label: &str, class: &str, head: Markup, rows: Markup) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label=(label) {
            table class=[Some(class).filter(|class| !class.is_empty())] {
                caption.visually-hidden { (label) }
                thead { (head) }
                tbody { (rows) }
            }
        }
    }
}

/// A count with thousands separators: `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A message above a page's content, e.g. after a form was sent.
pub fn notice(kind: NoticeKind, text: &str) -> Markup {
    let (class, role) = match kind {
        NoticeKind::Done => ("notice done", "status"),
        NoticeKind::Problem => ("notice problem", "alert"),
    };
    html! { div class=(class) role=(role) { (text) } }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Done,
    Problem,
}

/// A moment to the minute, e.g. `2026-11-28 13:05 UTC`; in the reader's time zone once the page
/// script has run, UTC on hover.
pub fn time(millis: Millis) -> Markup {
    moment(millis, "minute", "%Y-%m-%d %H:%M UTC")
}

/// A moment to the second: attempts and events often come seconds apart.
pub fn precise_time(millis: Millis) -> Markup {
    moment(millis, "second", "%Y-%m-%d %H:%M:%S UTC")
}

/// A moment as "3 minutes ago" once the page script has run (to the second in UTC before),
/// the exact moment on hover: the events table, where recency matters most.
pub fn relative_time(millis: Millis) -> Markup {
    moment(millis, "relative", "%Y-%m-%d %H:%M:%S UTC")
}

/// A `<time>` in UTC, marked for `local-time.js` with `style`.
fn moment(millis: Millis, style: &str, utc_format: &str) -> Markup {
    let at = to_datetime(millis);
    let utc = at.format(utc_format).to_string();
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            title=(utc) data-time=(style) { (utc) }
    }
}

/// A delivery status as a badge, `channel` before it when given: waiting (for the channel) and
/// retrying (after a failed attempt) are kinds of pending worth telling apart.
pub fn status_badge(
    channel: Option<&str>,
    status: DeliveryStatus,
    waiting: bool,
    had_error: bool,
) -> Markup {
    let (class, label) = match status {
        DeliveryStatus::Delivered => ("delivered", "Delivered"),
        DeliveryStatus::Failed => ("failed", "Failed"),
        _ if waiting => ("waiting", "Waiting"),
        _ if had_error => ("retrying", "Retrying"),
        _ => ("pending", "Pending"),
    };
    html! {
        span class={ "badge " (class) } {
            @if let Some(channel) = channel { (channel) ": " }
            (label)
        }
    }
}

/// A category colour as CSS text, `#rrggbb`.
pub fn color_hex(color: u32) -> String {
    format!("#{:06x}", color & 0x00ff_ffff)
}

/// A square of colour `hex`, with `title` as its tooltip. Drawn as an SVG fill: the content
/// security policy allows no `style` attribute.
pub fn swatch(hex: &str, title: Option<&str>) -> Markup {
    html! {
        svg.swatch viewBox="0 0 1 1" aria-hidden="true" focusable="false" {
            @if let Some(title) = title { title { (title) } }
            rect width="1" height="1" fill=(hex) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_badges_tell_waiting_and_retrying_apart() {
        let badge =
            |status, waiting, error| status_badge(None, status, waiting, error).into_string();
        assert!(badge(DeliveryStatus::Delivered, false, true).contains("Delivered"));
        assert!(badge(DeliveryStatus::Failed, false, true).contains("badge failed"));
        assert!(badge(DeliveryStatus::Pending, true, true).contains("Waiting"));
        assert!(badge(DeliveryStatus::Pending, false, true).contains("Retrying"));
        assert!(badge(DeliveryStatus::Pending, false, false).contains("Pending"));
        assert_eq!(
            status_badge(Some("Discord"), DeliveryStatus::Delivered, false, false).into_string(),
            r#"<span class="badge delivered">Discord: Delivered</span>"#
        );
    }

    #[test]
    fn swatches_are_fills_not_styles() {
        assert_eq!(
            swatch("#ff0000", None).into_string(),
            r##"<svg class="swatch" viewBox="0 0 1 1" aria-hidden="true" focusable="false"><rect width="1" height="1" fill="#ff0000"></rect></svg>"##
        );
        assert!(
            swatch("#ff0000", Some("<b>"))
                .into_string()
                .contains("<title>&lt;b&gt;</title>")
        );
    }

    #[test]
    fn colours_are_six_hex_digits() {
        assert_eq!(color_hex(0x00ff_0000), "#ff0000");
        assert_eq!(color_hex(0x12), "#000012");
    }

    #[test]
    fn counts_get_thousands_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }

    #[test]
    fn times_read_in_utc_until_the_script_makes_them_local() {
        let text = time(1_764_334_800_000).into_string();
        assert_eq!(
            text,
            r#"<time datetime="2025-11-28T13:00:00.000Z" title="2025-11-28 13:00 UTC" data-time="minute">2025-11-28 13:00 UTC</time>"#
        );
        let text = precise_time(1_764_334_805_250).into_string();
        assert!(
            text.contains(r#"data-time="second">2025-11-28 13:00:05 UTC<"#),
            "{text}"
        );
        let text = relative_time(1_764_334_805_250).into_string();
        assert!(
            text.contains(r#"data-time="relative">2025-11-28 13:00:05 UTC<"#),
            "{text}"
        );
    }
}
