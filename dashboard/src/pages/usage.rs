//! Usage: events this month and categories against the plan's limits, and when the monthly
//! count starts again; the same numbers as `GET /api/v1/quota`.

use maud::{Markup, html};
use pingpilot_core::model::now_millis;
use pingpilot_core::service::deliveries::quota;
use poem::{Route, get, handler};

use crate::PREFIX;
use crate::layout::{self, Nav};
use crate::web::{PageResult, SignedIn};

pub fn routes(route: Route) -> Route {
    route.at("/usage", get(usage_page))
}

#[handler]
async fn usage_page(user: SignedIn) -> PageResult {
    let quota = quota(&user.state, &user.account, now_millis()).await?;
    let body = html! {
        h1 { "Usage" }
        p { "Plan: " strong.plan { (quota.plan) } }
        div.cards {
            section.card.usage aria-labelledby="events-used" {
                h2 #events-used { "Events this month" }
                (meter(quota.events_used, quota.events_limit, "events"))
                p.hint {
                    "Counted when accepted. The count starts again on "
                    (layout::time(quota.resets_at.timestamp_millis())) "."
                }
            }
            section.card.usage aria-labelledby="categories-used" {
                h2 #categories-used { "Categories" }
                (meter(quota.categories_used, quota.categories_limit, "categories"))
                p.hint { a href=(PREFIX) { "Manage categories" } }
            }
        }
        p.hint { "Test notifications from the settings page do not count." }
    };
    user.page(Some(Nav::Usage), "Usage", body).await
}

/// `used of limit` with a bar, or the count and "No limit".
fn meter(used: u64, limit: Option<u64>, what: &str) -> Markup {
    match limit {
        Some(limit) => html! {
            p.count { strong { (used) } " of " (limit) " " (what) " used" }
            // An SVG bar: the content security policy allows no `style` attribute.
            svg.meter viewBox="0 0 100 1" preserveAspectRatio="none" aria-hidden="true"
                focusable="false" {
                rect width=(percent(used, limit)) height="1" {}
            }
        },
        None => html! {
            p.count { strong { (used) } " " (what) " · No limit" }
        },
    }
}

/// How full a limit is, 0–100; a zero limit with nothing used is empty.
fn percent(used: u64, limit: u64) -> u64 {
    if limit == 0 {
        return if used == 0 { 0 } else { 100 };
    }
    (used.saturating_mul(100) / limit).min(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_up_to_the_limit() {
        assert_eq!(percent(0, 100), 0);
        assert_eq!(percent(42, 100), 42);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(150, 100), 100);
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(1, 0), 100);
    }

    #[test]
    fn unlimited_plans_say_so() {
        let text = meter(7, None, "events").into_string();
        assert!(text.contains("No limit") && !text.contains("bar"), "{text}");
        let text = meter(42, Some(100), "events").into_string();
        assert!(
            text.contains("42") && text.contains(r#"<rect width="42" height="1">"#),
            "{text}"
        );
        assert!(!text.contains("style"), "{text}");
    }
}
