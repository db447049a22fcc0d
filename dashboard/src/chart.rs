//! A bar chart drawn on the server as inline SVG: no script, readable by screen readers through
//! its label, a tooltip (`<title>`) on every bar.

use maud::{Markup, html};

use crate::range::Window;

/// One bar: its axis label, the span it stands for, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub title: String,
    pub count: u64,
}

/// The plot's own units: each bar's slot is `SLOT` wide, the busiest bar `PLOT_HEIGHT` tall.
/// The plot stretches to the width and height the style sheet gives it, so its labels are
/// HTML beside it, at the page's font size whatever the screen.
const SLOT: f64 = 10.0;
const PLOT_HEIGHT: f64 = 100.0;
/// At most this many axis labels; a phone shows every other one.
const MAX_LABELS: usize = 12;

/// Bars with a label under every few of them, the busiest count at the top and 0 at the
/// bottom; `label` names the chart for screen readers.
pub fn bar_chart(bars: &[Bar], label: &str) -> Markup {
    let width = SLOT * bars.len().max(1) as f64;
    let max = bars.iter().map(|bar| bar.count).max().unwrap_or(0);
    let label_every = bars.len().div_ceil(MAX_LABELS).max(1);
    html! {
        div.chart role="img" aria-label=(label) {
            div.chart-plot {
                span.y-max aria-hidden="true" { (max) }
                span.y-zero aria-hidden="true" { "0" }
                svg.chart xmlns="http://www.w3.org/2000/svg"
                    viewBox={ "0 0 " (num(width)) " " (num(PLOT_HEIGHT)) }
                    preserveAspectRatio="none" focusable="false" aria-hidden="true" {
                    line.axis x1="0" y1=(num(PLOT_HEIGHT)) x2=(num(width)) y2=(num(PLOT_HEIGHT)) {}
                    @for (index, bar) in bars.iter().enumerate() {
                        @let x = SLOT * index as f64;
                        @let height = bar_height(bar.count, max, PLOT_HEIGHT);
                        g {
                            title { (bar.title) ": " (count_text(bar.count)) }
                            rect.slot x=(num(x)) y="0" width=(num(SLOT)) height=(num(PLOT_HEIGHT)) {}
                            rect.bar x=(num(x + SLOT * 0.15)) y=(num(PLOT_HEIGHT - height))
                                width=(num(SLOT * 0.7)) height=(num(height)) {}
                        }
                    }
                }
            }
            div.chart-axis aria-hidden="true" {
                @for (index, bar) in bars.iter().enumerate() {
                    @if index % label_every == 0 {
                        span class=(if (index / label_every) % 2 == 1 { "alt" } else { "" }) {
                            span { (bar.label) }
                        }
                    } @else {
                        span {}
                    }
                }
            }
        }
    }
}

/// A window's events per bucket as a figure: the chart, and what it shows in words under it.
pub fn window_chart(window: &Window, counts: &[u64]) -> Markup {
    let bars: Vec<Bar> = window
        .buckets
        .iter()
        .zip(counts)
        .map(|(bucket, &count)| Bar {
            label: bucket.label.clone(),
            title: bucket.title.clone(),
            count,
        })
        .collect();
    let label = window_label(window, &bars);
    html! {
        figure.chart {
            (bar_chart(&bars, &label))
            figcaption.hint { (label) }
        }
    }
}

/// What the chart shows, in words: its span, the total and the busiest bar.
fn window_label(window: &Window, bars: &[Bar]) -> String {
    let total: u64 = bars.iter().map(|bar| bar.count).sum();
    let mut label = format!(
        "Events per {}, {} (UTC): {} in total",
        window.range.unit(),
        window.describe(),
        crate::layout::thousands(total)
    );
    if let Some(busiest) = bars
        .iter()
        .filter(|bar| bar.count > 0)
        .max_by_key(|bar| bar.count)
    {
        label.push_str(&format!(
            "; busiest {} with {}",
            busiest.title,
            count_text(busiest.count)
        ));
    }
    label.push('.');
    label
}

fn bar_height(count: u64, max: u64, plot_height: f64) -> f64 {
    if max == 0 {
        0.0
    } else {
        plot_height * count as f64 / max as f64
    }
}

/// `3 events`, `1 event`.
pub fn count_text(count: u64) -> String {
    if count == 1 {
        "1 event".into()
    } else {
        format!("{} events", crate::layout::thousands(count))
    }
}

/// A coordinate with at most one decimal, as SVG reads it.
fn num(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(counts: &[u64]) -> Vec<Bar> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &count)| Bar {
                label: format!("{i:02}"),
                title: format!("hour {i}"),
                count,
            })
            .collect()
    }

    fn heights(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|rest| {
                let start = rest.find("height=\"").expect("height") + 8;
                let end = rest[start..].find('"').expect("end") + start;
                rest[start..end].parse().expect("number")
            })
            .collect()
    }

    #[test]
    fn one_bar_per_bucket_scaled_to_the_busiest() {
        let svg = bar_chart(&bars(&[0, 2, 4, 1]), "Events per hour").into_string();
        let heights = heights(&svg);
        assert_eq!(heights.len(), 4);
        assert_eq!(heights[0], 0.0);
        assert_eq!(heights[2], PLOT_HEIGHT);
        assert_eq!(heights[1], heights[2] / 2.0);
        assert!(svg.contains("<title>hour 2: 4 events</title>"), "{svg}");
        assert!(svg.contains("<title>hour 3: 1 event</title>"), "{svg}");
    }

    #[test]
    fn the_chart_is_labelled_for_screen_readers() {
        let svg = bar_chart(&bars(&[1]), "Events per day this week").into_string();
        assert!(svg.starts_with(r#"<div class="chart" role="img""#), "{svg}");
        assert!(svg.contains(r#"role="img""#), "{svg}");
        assert!(
            svg.contains(r#"aria-label="Events per day this week""#),
            "{svg}"
        );
        // The picture is the wrapper's; its bars keep their tooltips.
        assert!(svg.contains(r#"aria-hidden="true""#), "{svg}");
    }

    #[test]
    fn an_empty_range_draws_flat_bars() {
        let svg = bar_chart(&bars(&[0; 24]), "none").into_string();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(heights(&svg), vec![0.0; 24]);
        assert!(bar_chart(&[], "nothing").into_string().contains("<svg"));
    }

    #[test]
    fn axis_labels_thin_out_to_fit() {
        let svg = bar_chart(&bars(&[1; 24]), "x").into_string();
        assert!(
            svg.contains(r#"<span class=""><span>00</span></span>"#)
                && svg.contains(r#"<span class="alt"><span>02</span></span>"#),
            "{svg}"
        );
        assert!(!svg.contains(">01</span>"), "{svg}");
        let week = bar_chart(&bars(&[1; 7]), "x").into_string();
        assert!((0..7).all(|i| week.contains(&format!("<span>{i:02}</span>"))));
    }

    #[test]
    fn text_is_escaped() {
        let mut bad = bars(&[1]);
        bad[0].title = "<script>".into();
        let svg = bar_chart(&bad, "a \"label\"").into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }

    #[test]
    fn coordinates_are_short() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.345), "12.3");
    }
}
