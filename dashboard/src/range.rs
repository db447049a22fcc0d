//! The category page's time ranges, in UTC with weeks starting on Monday (as the API's
//! `timeRange`), and the chart's buckets in them: hours for today, days for a week or month.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use pingpilot_core::model::{Millis, to_datetime};

const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 24 * HOUR_MS;

/// One of the category page's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Today,
    Week,
    Month,
}

impl Range {
    pub const ALL: [Range; 3] = [Range::Today, Range::Week, Range::Month];

    /// The range a `?range=` value names; anything else, or nothing, is today.
    pub fn from_query(text: Option<&str>) -> Self {
        match text {
            Some("week") => Self::Week,
            Some("month") => Self::Month,
            _ => Self::Today,
        }
    }

    /// The `?range=` value.
    pub fn query(self) -> &'static str {
        match self {
            Self::Today => "today",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The tab's text.
    pub fn label(self) -> &'static str {
        match self {
            Self::Today => "Today",
            Self::Week => "This week",
            Self::Month => "This month",
        }
    }

    /// What one bucket of the chart is.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Today => "hour",
            Self::Week | Self::Month => "day",
        }
    }
}

/// A span of the chart: `[start, end)` with its axis label and a full description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: Millis,
    pub end: Millis,
    /// Short, for the axis: `13:00`, `Mon 12`, `12`.
    pub label: String,
    /// Whole, for the bar's tooltip: `2026-05-12 13:00–14:00 UTC`, `Mon 2026-05-12`.
    pub title: String,
}

/// The whole range the current moment falls in (future parts included, so the chart keeps its
/// shape through the day), with its buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub range: Range,
    pub start: Millis,
    pub end: Millis,
    pub buckets: Vec<Bucket>,
}

impl Range {
    /// The first day of the range `now` falls in, and how many days it has.
    fn days_around(self, now: Millis) -> (NaiveDate, i64) {
        let today = to_datetime(now).date_naive();
        match self {
            Range::Today => (today, 1),
            Range::Week => (
                today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
                7,
            ),
            Range::Month => {
                let first = today.with_day(1).unwrap_or(today);
                (first, days_in_month(first))
            }
        }
    }

    /// When the range `now` falls in starts (midnight UTC).
    pub fn start_around(self, now: Millis) -> Millis {
        midnight(self.days_around(now).0)
    }
}

impl Window {
    /// The window of `range` that `now` falls in.
    pub fn around(range: Range, now: Millis) -> Self {
        let (first_day, days) = range.days_around(now);
        let start = midnight(first_day);
        let end = start + days * DAY_MS;
        let buckets = match range {
            Range::Today => hour_buckets(start),
            Range::Week | Range::Month => day_buckets(first_day, days, range),
        };
        Self {
            range,
            start,
            end,
            buckets,
        }
    }

    /// How many of `times` fall in each bucket; times outside the window are not counted.
    pub fn counts(&self, times: impl IntoIterator<Item = Millis>) -> Vec<u64> {
        let mut counts = vec![0; self.buckets.len()];
        for at in times {
            if at < self.start || at >= self.end {
                continue;
            }
            let index = self.buckets.partition_point(|bucket| bucket.end <= at);
            if let Some(count) = counts.get_mut(index) {
                *count += 1;
            }
        }
        counts
    }

    /// The dates the window covers: `2026-05-12`, `2026-05-11 to 2026-05-17` or `May 2026`.
    pub fn describe(&self) -> String {
        let first = to_datetime(self.start);
        let last = to_datetime(self.end - 1);
        match self.range {
            Range::Today => first.format("%Y-%m-%d").to_string(),
            Range::Week => format!(
                "{} to {}",
                first.format("%Y-%m-%d"),
                last.format("%Y-%m-%d")
            ),
            Range::Month => first.format("%B %Y").to_string(),
        }
    }
}

fn midnight(day: NaiveDate) -> Millis {
    let at: NaiveDateTime = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    Utc.from_utc_datetime(&at).timestamp_millis()
}

fn days_in_month(first: NaiveDate) -> i64 {
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(31, |next| (next - first).num_days())
}

fn hour_buckets(start: Millis) -> Vec<Bucket> {
    let day = to_datetime(start).format("%Y-%m-%d").to_string();
    (0..24)
        .map(|hour| Bucket {
            start: start + hour * HOUR_MS,
            end: start + (hour + 1) * HOUR_MS,
            label: format!("{hour:02}:00"),
            title: format!("{day} {hour:02}:00–{:02}:00 UTC", (hour + 1) % 24),
        })
        .collect()
}

fn day_buckets(first_day: NaiveDate, days: i64, range: Range) -> Vec<Bucket> {
    (0..days)
        .map(|offset| {
            let day = first_day + Duration::days(offset);
            let start = midnight(day);
            let label = match range {
                Range::Week => day.format("%a %-d").to_string(),
                _ => day.format("%-d").to_string(),
            };
            Bucket {
                start,
                end: start + DAY_MS,
                label,
                title: day.format("%a %Y-%m-%d").to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("time")
            .timestamp_millis()
    }

    #[test]
    fn unknown_ranges_are_today() {
        assert_eq!(Range::from_query(Some("week")), Range::Week);
        assert_eq!(Range::from_query(Some("month")), Range::Month);
        assert_eq!(Range::from_query(Some("year")), Range::Today);
        assert_eq!(Range::from_query(None), Range::Today);
        for range in Range::ALL {
            assert_eq!(Range::from_query(Some(range.query())), range);
        }
    }

    #[test]
    fn today_is_24_hours_from_midnight_utc() {
        let window = Window::around(Range::Today, at("2026-05-13T15:42:00Z"));
        assert_eq!(window.start, at("2026-05-13T00:00:00Z"));
        assert_eq!(window.end, at("2026-05-14T00:00:00Z"));
        assert_eq!(window.buckets.len(), 24);
        assert_eq!(window.buckets[13].start, at("2026-05-13T13:00:00Z"));
        assert_eq!(window.buckets[13].label, "13:00");
        assert_eq!(window.buckets[23].title, "2026-05-13 23:00–00:00 UTC");
        assert_eq!(window.describe(), "2026-05-13");
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-05-13 is a Wednesday; its week runs Monday 11 to Sunday 17.
        let window = Window::around(Range::Week, at("2026-05-13T15:42:00Z"));
        assert_eq!(window.start, at("2026-05-11T00:00:00Z"));
        assert_eq!(window.end, at("2026-05-18T00:00:00Z"));
        let labels: Vec<_> = window.buckets.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Mon 11", "Tue 12", "Wed 13", "Thu 14", "Fri 15", "Sat 16", "Sun 17"
            ]
        );
        assert_eq!(window.describe(), "2026-05-11 to 2026-05-17");
        // A Monday begins its own week; a Sunday ends the one before.
        let monday = Window::around(Range::Week, at("2026-05-11T00:00:00Z"));
        assert_eq!(monday.start, at("2026-05-11T00:00:00Z"));
        let sunday = Window::around(Range::Week, at("2026-05-17T23:59:59Z"));
        assert_eq!(sunday.start, at("2026-05-11T00:00:00Z"));
    }

    #[test]
    fn weeks_cross_months_and_years() {
        // Thursday 2027-01-01 belongs to the week of Monday 2026-12-28.
        let window = Window::around(Range::Week, at("2027-01-01T08:00:00Z"));
        assert_eq!(window.start, at("2026-12-28T00:00:00Z"));
        assert_eq!(window.buckets[6].title, "Sun 2027-01-03");
    }

    #[test]
    fn months_have_their_own_length() {
        let may = Window::around(Range::Month, at("2026-05-13T15:42:00Z"));
        assert_eq!(may.start, at("2026-05-01T00:00:00Z"));
        assert_eq!(
            Range::Month.start_around(at("2026-05-13T15:42:00Z")),
            at("2026-05-01T00:00:00Z")
        );
        assert_eq!(may.end, at("2026-06-01T00:00:00Z"));
        assert_eq!(may.buckets.len(), 31);
        assert_eq!(may.describe(), "May 2026");
        let february = Window::around(Range::Month, at("2028-02-29T12:00:00Z"));
        assert_eq!(february.buckets.len(), 29);
        let december = Window::around(Range::Month, at("2026-12-31T23:59:59Z"));
        assert_eq!(december.end, at("2027-01-01T00:00:00Z"));
        assert_eq!(
            december.buckets.last().map(|b| b.label.as_str()),
            Some("31")
        );
    }

    #[test]
    fn events_fall_in_their_bucket() {
        let window = Window::around(Range::Today, at("2026-05-13T15:42:00Z"));
        let counts = window.counts([
            at("2026-05-13T00:00:00Z"),
            at("2026-05-13T13:59:59Z"),
            at("2026-05-13T13:00:00Z"),
            at("2026-05-13T23:59:59Z"),
            at("2026-05-12T23:59:59Z"),
            at("2026-05-14T00:00:00Z"),
        ]);
        assert_eq!(counts.len(), 24);
        assert_eq!(counts[0], 1);
        assert_eq!(counts[13], 2);
        assert_eq!(counts[23], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
    }
}
