//! An event as a Slack message: Block Kit blocks with a plain `text` fallback, within Slack's
//! limits, with Slack's escaping.

use pingpilot_core::provider::EventMessage;
use pingpilot_core::provider::kit::text::{self, ELLIPSIS};
use serde_json::{Value, json};

/// Slack's limit on a header block's text.
const HEADER_CHARS: usize = 150;
/// Slack's limit on a section's text, and what the fallback `text` is kept to.
const SECTION_CHARS: usize = 3000;
/// Slack's limit on the fields of one section.
const FIELDS_PER_SECTION: usize = 10;
/// A field's name and value, within Slack's 2,000 characters for the field's text.
const FIELD_NAME_CHARS: usize = 300;
const FIELD_VALUE_CHARS: usize = 1600;

/// `text` with Slack's three escapes (`&`, `<`, `>`), so user text cannot become a link or a
/// mention such as `<!channel>`, cut to at most `max` characters once escaped (an entity is
/// never split) and ending with "…" when cut.
pub fn escape(text: &str, max: usize) -> String {
    let entity = |c: char| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    };
    let width = |c: char| entity(c).map_or(1, str::len);
    let cut = text.chars().map(width).sum::<usize>() > max;
    // Room for the ellipsis when anything is cut.
    let budget = if cut { max.saturating_sub(1) } else { max };
    let mut escaped = String::new();
    let mut used = 0;
    for c in text.chars() {
        used += width(c);
        if used > budget {
            break;
        }
        match entity(c) {
            Some(entity) => escaped.push_str(entity),
            None => escaped.push(c),
        }
    }
    if cut && max > 0 {
        escaped.push(ELLIPSIS);
    }
    escaped
}

/// The message body Slack's incoming webhook takes.
pub fn build(message: &EventMessage) -> Value {
    let title = message.title();
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": text::cut(&title, HEADER_CHARS), "emoji": true},
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape(&message.description, SECTION_CHARS)},
        }),
    ];
    let fields: Vec<Value> = message
        .fields
        .iter()
        .map(|(name, value)| {
            let value = EventMessage::value_text(value);
            json!({
                "type": "mrkdwn",
                "text": format!(
                    "*{}*\n{}",
                    escape(name, FIELD_NAME_CHARS),
                    escape(&value, FIELD_VALUE_CHARS)
                ),
            })
        })
        .collect();
    for chunk in fields.chunks(FIELDS_PER_SECTION) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!(
                "<!date^{}^{{date_short_pretty}} {{time}}|{}> · {}",
                message.created_at.timestamp(),
                message.timestamp(),
                escape(&message.event_id, 100)
            ),
        }],
    }));
    let fallback = format!("{title}: {}", message.description);
    json!({
        "text": escape(&fallback, SECTION_CHARS),
        "blocks": blocks,
    })
}
