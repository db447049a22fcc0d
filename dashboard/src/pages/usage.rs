//! Usage: events this month and categories against the plan's limits, and when the monthly
//! count starts again (the same numbers as `GET /api/v1/quota`); then this month's events per
//! day and per category.

use std::collections::BTreeMap;

use maud::{Markup, html};
use pingpilot_core::model::now_millis;
use pingpilot_core::service::deliveries::quota;
use poem::{Route, get, handler};

use crate::PREFIX;
use crate::chart;
use crate::layout::{self, Nav};
use crate::range::{Range, Window};
use crate::web::{PageResult, SignedIn};

pub fn routes(route: Route) -> Route {
    route.at("/usage", get(usage_page))
}

#[handler]
async fn usage_page(user: SignedIn) -> PageResult {
    let now = now_millis();
    let quota = quota(&user.state, &user.account, now).await?;
    let month = Window::around(Range::Month, now);
    let days = user
        .state
        .store()
        .category_days_since(&user.account.id, month.start)
        .await?;
    let (per_day, per_category) = month_history(&month, &days);
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
        h2 { "This month" }
        (chart::window_chart(&month, &per_day))
        (category_table(&per_category))
    };
    user.page(Some(Nav::Usage), "Usage", body).await
}

/// This month's stored events per day, and per category (most first), from
/// `(category, day of the month from 0, count)` rows.
fn month_history(month: &Window, days: &[(String, i64, i64)]) -> (Vec<u64>, Vec<(String, u64)>) {
    let mut per_day = vec![0; month.buckets.len()];
    let mut per_category: BTreeMap<&str, u64> = BTreeMap::new();
    for (category, day, count) in days {
        let count = u64::try_from(*count).unwrap_or(0);
        if let Some(slot) = usize::try_from(*day)
            .ok()
            .and_then(|day| per_day.get_mut(day))
        {
            *slot += count;
        }
        *per_category.entry(category).or_default() += count;
    }
    let mut per_category: Vec<(String, u64)> = per_category
        .into_iter()
        .map(|(name, count)| (name.to_string(), count))
        .collect();
    per_category.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (per_day, per_category)
}

fn category_table(per_category: &[(String, u64)]) -> Markup {
    let total: u64 = per_category.iter().map(|(_, count)| count).sum();
    html! {
        @if per_category.is_empty() {
            p.muted { "No events this month yet." }
        } @else {
            (layout::table(
                "Events per category this month",
                "",
                html! {
                    tr {
                        th scope="col" { "Category" }
                        th.number scope="col" { "Events" }
                        th.number scope="col" { "Share" }
                    }
                },
                html! {
                    @for (name, count) in per_category {
                        tr {
                            td { a href={ (PREFIX) "/categories/" (name) "?range=month" } { (name) } }
                            td.number { (layout::thousands(*count)) }
                            td.number { (percent(*count, total)) " %" }
                        }
                    }
                },
            ))
            p.hint {
                "Events kept now, by the day they came (UTC). The count above is what the plan "
                "counts: it includes events deleted since, and no event's deletion gives it back."
            }
        }
    }
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
    fn the_month_is_summed_per_day_and_per_category() {
        let month = Window::around(Range::Month, 1_764_547_200_000); // 2025-12-01
        let rows = [
            ("sale".to_string(), 0, 2),
            ("bug".to_string(), 0, 1),
            ("sale".to_string(), 30, 5),
            ("odd".to_string(), 99, 1),
        ];
        let (per_day, per_category) = month_history(&month, &rows);
        assert_eq!(per_day.len(), 31);
        assert_eq!((per_day[0], per_day[30]), (3, 5));
        assert_eq!(per_day.iter().sum::<u64>(), 8);
        assert_eq!(
            per_category,
            [("sale".into(), 7), ("bug".into(), 1), ("odd".into(), 1)]
        );
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
