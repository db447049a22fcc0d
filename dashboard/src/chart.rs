//! A bar chart drawn on the server as inline SVG: no script, readable by screen readers through
//! its label, a tooltip (`<title>`) on every bar.

use maud::{Markup, html};

/// One bar: its axis label, the span it stands for, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub title: String,
    pub count: u64,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 4.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// At most this many axis labels, so they do not overlap at phone width.
const MAX_LABELS: usize = 12;

/// The chart of `bars`, described to assistive technology by `label`.
pub fn bar_chart(bars: &[Bar], label: &str) -> Markup {
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / bars.len().max(1) as f64;
    let max = bars.iter().map(|bar| bar.count).max().unwrap_or(0);
    let label_every = bars.len().div_ceil(MAX_LABELS).max(1);
    let baseline = TOP + plot_height;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            role="img" aria-label=(label) {
            title { (label) }
            text.axis x=(num(LEFT - 6.0)) y=(num(TOP + 4.0)) text-anchor="end" { (max) }
            text.axis x=(num(LEFT - 6.0)) y=(num(baseline)) text-anchor="end" { "0" }
            line.axis x1=(num(LEFT)) y1=(num(baseline)) x2=(num(WIDTH - RIGHT)) y2=(num(baseline)) {}
            @for (index, bar) in bars.iter().enumerate() {
                @let x = LEFT + slot * index as f64;
                @let height = bar_height(bar.count, max, plot_height);
                g {
                    title { (bar.title) ": " (count_text(bar.count)) }
                    // A transparent slot over the whole height, so that even an empty bar shows
                    // its tooltip on hover.
                    rect.slot x=(num(x)) y=(num(TOP)) width=(num(slot)) height=(num(plot_height)) {}
                    rect.bar x=(num(x + slot * 0.15)) y=(num(baseline - height))
                        width=(num(slot * 0.7)) height=(num(height)) {}
                }
                @if index % label_every == 0 {
                    text.axis x=(num(x + slot / 2.0)) y=(num(HEIGHT - 6.0)) text-anchor="middle" {
                        (bar.label)
                    }
                }
            }
        }
    }
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
        format!("{count} events")
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
        assert_eq!(heights[2], HEIGHT - TOP - BOTTOM);
        assert_eq!(heights[1], heights[2] / 2.0);
        assert!(svg.contains("<title>hour 2: 4 events</title>"), "{svg}");
        assert!(svg.contains("<title>hour 3: 1 event</title>"), "{svg}");
    }

    #[test]
    fn the_chart_is_labelled_for_screen_readers() {
        let svg = bar_chart(&bars(&[1]), "Events per day this week").into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains(r#"role="img""#), "{svg}");
        assert!(
            svg.contains(r#"aria-label="Events per day this week""#),
            "{svg}"
        );
        assert!(
            svg.contains("<title>Events per day this week</title>"),
            "{svg}"
        );
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
            svg.contains(">00</text>") && svg.contains(">02</text>"),
            "{svg}"
        );
        assert!(!svg.contains(">01</text>"), "{svg}");
        let week = bar_chart(&bars(&[1; 7]), "x").into_string();
        assert!((0..7).all(|i| week.contains(&format!(">{i:02}</text>"))));
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
