//! The HTML text of one event, within Telegram's message length.

use pingpilot_core::provider::EventMessage;
use pingpilot_core::provider::kit::text::ELLIPSIS;

/// Telegram's limit for a message text. We count UTF-16 code units of the HTML source: Telegram
/// counts characters after parsing the markup, and the source is never shorter in either unit.
pub const TEXT_MAX: usize = 4096;

/// One piece of the text: markup is kept whole or dropped, text may be cut between characters.
enum Part {
    Markup(&'static str),
    Plain(String),
    Bold(String),
}

const BOLD_TAGS: usize = "<b></b>".len();

impl Part {
    fn render(&self) -> String {
        match self {
            Part::Markup(m) => (*m).to_string(),
            Part::Plain(text) => escape(text),
            Part::Bold(text) => format!("<b>{}</b>", escape(text)),
        }
    }
}

/// `<b>{title}</b>\n{description}`, then, when there are fields, a blank line and one
/// `<b>{key}</b>: {value}` line per field, all HTML-escaped. Longer than [`TEXT_MAX`]: cut at a
/// character (never inside an entity or a tag) and ended with "…".
pub fn render_text(message: &EventMessage) -> String {
    let mut parts = vec![
        Part::Bold(message.title()),
        Part::Markup("\n"),
        Part::Plain(message.description.clone()),
    ];
    if !message.fields.is_empty() {
        parts.push(Part::Markup("\n"));
        for (key, value) in &message.fields {
            parts.push(Part::Markup("\n"));
            parts.push(Part::Bold(key.clone()));
            parts.push(Part::Markup(": "));
            parts.push(Part::Plain(EventMessage::value_text(value)));
        }
    }
    assemble(&parts, TEXT_MAX)
}

fn assemble(parts: &[Part], max: usize) -> String {
    let full: String = parts.iter().map(Part::render).collect();
    if units(&full) <= max {
        return full;
    }
    let mut out = String::new();
    let mut left = max - ELLIPSIS.len_utf16();
    for part in parts {
        let rendered = part.render();
        let len = units(&rendered);
        if len <= left {
            out.push_str(&rendered);
            left -= len;
            continue;
        }
        match part {
            Part::Markup(_) => {}
            Part::Plain(text) => out.push_str(&escape_prefix(text, left)),
            Part::Bold(text) => {
                let inner = escape_prefix(text, left.saturating_sub(BOLD_TAGS));
                if !inner.is_empty() {
                    out.push_str("<b>");
                    out.push_str(&inner);
                    out.push_str("</b>");
                }
            }
        }
        break;
    }
    out.push(ELLIPSIS);
    out
}

/// Escapes what HTML parse mode requires: `&`, `<` and `>`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// The escaped form of the longest prefix of `text` that fits in `budget` units.
fn escape_prefix(text: &str, budget: usize) -> String {
    let mut out = String::new();
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        push_escaped(&mut piece, c);
        if units(&out) + units(&piece) > budget {
            break;
        }
        out.push_str(&piece);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::{Map, Value, json};

    fn message(category: &str, description: &str, fields: &[(&str, Value)]) -> EventMessage {
        EventMessage {
            event_id: "evt_1".into(),
            category: category.into(),
            emoji: Some("💰".into()),
            color: 0xFFAA00,
            description: description.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Map<_, _>>(),
            created_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    #[test]
    fn renders_the_documented_text() {
        let msg = message(
            "sale",
            "New purchase completed",
            &[("plan", json!("pro")), ("amount", json!(99.99))],
        );
        assert_eq!(
            render_text(&msg),
            "<b>💰 Sale</b>\nNew purchase completed\n\n<b>plan</b>: pro\n<b>amount</b>: 99.99"
        );
    }

    #[test]
    fn without_fields_there_is_no_blank_line() {
        let msg = message("sale", "Done", &[]);
        assert_eq!(render_text(&msg), "<b>💰 Sale</b>\nDone");
    }

    #[test]
    fn escapes_markup_everywhere() {
        let msg = message(
            "a-b",
            "x < y && y > z",
            &[("<k>", json!("<script>&amp;")), ("ok", json!(true))],
        );
        assert_eq!(
            render_text(&msg),
            "<b>💰 A-b</b>\nx &lt; y &amp;&amp; y &gt; z\n\n<b>&lt;k&gt;</b>: &lt;script&gt;&amp;amp;\n<b>ok</b>: true"
        );
    }

    #[test]
    fn long_description_is_cut_to_the_limit() {
        let msg = message("sale", &"a".repeat(5000), &[("k", json!("v"))]);
        let text = render_text(&msg);
        assert_eq!(units(&text), TEXT_MAX);
        assert!(text.starts_with("<b>💰 Sale</b>\naaa"));
        assert!(text.ends_with("aaa…"));
    }

    #[test]
    fn cuts_never_split_an_entity() {
        // Every `&` is 5 units escaped; wherever the cut falls the entity stays whole.
        for pad in 0..5 {
            let description = format!("{}{}", "a".repeat(pad), "&".repeat(1000));
            let text = render_text(&message("sale", &description, &[]));
            assert!(units(&text) <= TEXT_MAX);
            let body = text.trim_end_matches('…');
            assert!(body.ends_with("&amp;") || body.ends_with('a'), "{pad}");
            assert_eq!(body.matches('&').count(), body.matches("&amp;").count());
        }
    }

    #[test]
    fn a_cut_inside_a_bold_key_closes_the_tag() {
        let desc = "d".repeat(4000);
        let key = "k".repeat(200);
        let text = render_text(&message("sale", &desc, &[(key.as_str(), json!("v"))]));
        assert_eq!(units(&text), TEXT_MAX);
        assert!(text.ends_with("kkk</b>…"), "{}", &text[text.len() - 20..]);
        assert_eq!(text.matches("<b>").count(), text.matches("</b>").count());
    }

    #[test]
    fn a_cut_at_markup_drops_it() {
        // Fill so that only the ": " markup after a key would overflow.
        let title_part = "<b>💰 Sale</b>\n";
        let tail = "\n\n<b>k</b>";
        let fill = TEXT_MAX - 1 - units(title_part) - units(tail) - 1;
        let text = render_text(&message("sale", &"d".repeat(fill), &[("k", json!("v"))]));
        assert!(text.ends_with("<b>k</b>…"), "{}", &text[text.len() - 20..]);
        assert!(units(&text) <= TEXT_MAX);
    }
}
