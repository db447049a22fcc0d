//! The Discord embed for one event, within Discord's embed limits.

use pingpilot_core::provider::EventMessage;
use pingpilot_core::provider::kit::text::cut;
use serde_json::{Value, json};

/// Discord's embed limits, in characters.
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELDS_MAX: usize = 25;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
/// Sum of title, description, field names and values.
pub const TOTAL_MAX: usize = 6000;

/// What an empty or whitespace-only text becomes. Discord trims embed text and answers 400 to an
/// empty field value; a zero-width space passes and renders blank, which is what was sent.
pub const BLANK: &str = "\u{200b}";

/// Builds `{"title","description","color","timestamp","fields"}` (in that key order) for
/// `message`. Texts are trimmed and cut with "…" to fit their limits; fields after the 25th, or
/// beyond the 6000-character total, are dropped (the first one that does not fit keeps what fits
/// of its value).
pub fn build_embed(message: &EventMessage) -> Value {
    let title = fit(&message.title(), TITLE_MAX);
    let description = fit(&message.description, DESCRIPTION_MAX);
    let mut budget = TOTAL_MAX.saturating_sub(chars(&title) + chars(&description));

    let mut fields = Vec::new();
    for (name, value) in message.fields.iter().take(FIELDS_MAX) {
        let name = fit(name, FIELD_NAME_MAX);
        let value = fit(&EventMessage::value_text(value), FIELD_VALUE_MAX);
        let (name_len, value_len) = (chars(&name), chars(&value));
        if name_len + value_len <= budget {
            budget -= name_len + value_len;
            fields.push(field(name, value));
            continue;
        }
        if name_len < budget {
            fields.push(field(name, cut(&value, budget - name_len)));
        }
        break;
    }

    json!({
        "title": title,
        "description": description,
        "color": message.color,
        "timestamp": message.timestamp(),
        "fields": fields,
    })
}

fn field(name: String, value: String) -> Value {
    json!({"name": name, "value": value, "inline": true})
}

/// Trims `text` (as Discord would), replaces an empty result with [`BLANK`] and cuts it to `max`.
fn fit(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return BLANK.to_string();
    }
    cut(trimmed, max)
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::Map;

    fn message(description: &str, fields: Map<String, Value>) -> EventMessage {
        EventMessage {
            event_id: "evt_1".into(),
            category: "sale".into(),
            emoji: Some("💰".into()),
            color: 0xFFAA00,
            description: description.into(),
            fields,
            created_at: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn total(embed: &Value) -> usize {
        let text = |v: &Value| chars(v.as_str().unwrap());
        let mut sum = text(&embed["title"]) + text(&embed["description"]);
        for f in embed["fields"].as_array().unwrap() {
            sum += text(&f["name"]) + text(&f["value"]);
        }
        sum
    }

    #[test]
    fn embed_has_documented_shape_and_key_order() {
        let msg = message(
            "New purchase completed",
            fields(&[
                ("plan", json!("pro")),
                ("amount", json!(99.99)),
                ("recurring", json!(true)),
            ]),
        );
        let embed = build_embed(&msg);
        assert_eq!(
            serde_json::to_string(&embed).unwrap(),
            r#"{"title":"💰 Sale","description":"New purchase completed","color":16755200,"timestamp":"2024-01-02T03:04:05.000Z","fields":[{"name":"plan","value":"pro","inline":true},{"name":"amount","value":"99.99","inline":true},{"name":"recurring","value":"true","inline":true}]}"#
        );
    }

    #[test]
    fn blank_texts_become_zero_width_space() {
        let msg = message("   ", fields(&[("note", json!("  ")), (" ", json!(""))]));
        let embed = build_embed(&msg);
        assert_eq!(embed["description"], BLANK);
        assert_eq!(embed["fields"][0]["name"], "note");
        assert_eq!(embed["fields"][0]["value"], BLANK);
        assert_eq!(embed["fields"][1]["name"], BLANK);
        assert_eq!(embed["fields"][1]["value"], BLANK);
    }

    #[test]
    fn texts_are_trimmed() {
        let msg = message("  hello \n", fields(&[(" k ", json!(" v "))]));
        let embed = build_embed(&msg);
        assert_eq!(embed["description"], "hello");
        assert_eq!(embed["fields"][0]["name"], "k");
        assert_eq!(embed["fields"][0]["value"], "v");
    }

    #[test]
    fn long_texts_are_cut_with_ellipsis_at_char_boundaries() {
        let long_name = "n".repeat(300);
        let msg = message(
            &"é".repeat(5000),
            fields(&[(long_name.as_str(), json!("ü".repeat(2000)))]),
        );
        let embed = build_embed(&msg);
        let description = embed["description"].as_str().unwrap();
        assert_eq!(chars(description), DESCRIPTION_MAX);
        assert!(description.ends_with("é…"));
        let field = &embed["fields"][0];
        assert_eq!(chars(field["name"].as_str().unwrap()), FIELD_NAME_MAX);
        assert!(field["name"].as_str().unwrap().ends_with('…'));
        assert_eq!(chars(field["value"].as_str().unwrap()), FIELD_VALUE_MAX);
        assert!(field["value"].as_str().unwrap().ends_with("ü…"));
    }

    #[test]
    fn at_most_25_fields() {
        let many: Map<String, Value> = (0..30).map(|i| (format!("f{i}"), json!(i))).collect();
        let embed = build_embed(&message("d", many));
        let fields = embed["fields"].as_array().unwrap();
        assert_eq!(fields.len(), FIELDS_MAX);
        assert_eq!(fields[24]["name"], "f24");
    }

    #[test]
    fn total_stays_within_6000_by_cutting_then_dropping_trailing_fields() {
        // 4096 (description) + 6 (title) leaves 1898: one full field (2 + 1024), then the
        // second is cut to what is left (872), and the rest are dropped.
        let big: Map<String, Value> = (0..5)
            .map(|i| (format!("f{i}"), json!("x".repeat(1024))))
            .collect();
        let embed = build_embed(&message(&"d".repeat(4096), big));
        let fields = embed["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0]["value"].as_str().unwrap().len(), 1024);
        let cut = fields[1]["value"].as_str().unwrap();
        assert!(cut.ends_with('…'));
        assert_eq!(total(&embed), TOTAL_MAX);
    }
}
