//! An event as an e-mail: a subject with the emoji and category, and a multipart body with the
//! same content as plain text and as HTML.

use pingpilot_core::provider::EventMessage;
use pingpilot_core::provider::kit::text;

/// Longest subject, in characters (longer ones are cut with "…").
const SUBJECT_CHARS: usize = 150;

/// `💰 Sale: New purchase completed`, cut to [`SUBJECT_CHARS`].
pub fn subject(message: &EventMessage) -> String {
    let subject = format!("{}: {}", message.title(), one_line(&message.description));
    text::cut(&subject, SUBJECT_CHARS)
}

/// A text on one line (a subject cannot hold line breaks).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The plain text part: title, description, one `name: value` line per field, time and id.
pub fn plain(message: &EventMessage) -> String {
    let mut body = format!("{}\n{}\n", message.title(), message.description);
    if !message.fields.is_empty() {
        body.push('\n');
        for (name, value) in &message.fields {
            body.push_str(&format!("{name}: {}\n", EventMessage::value_text(value)));
        }
    }
    body.push_str(&format!(
        "\n{} · {}\n",
        message.timestamp(),
        message.event_id
    ));
    body
}

/// The HTML part: the same content, every text escaped, the category colour as a border.
pub fn html(message: &EventMessage) -> String {
    let mut rows = String::new();
    for (name, value) in &message.fields {
        rows.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:2px 12px 2px 0;vertical-align:top\">{}</th>\
             <td style=\"padding:2px 0;white-space:pre-wrap\">{}</td></tr>",
            escape(name),
            escape(&EventMessage::value_text(value))
        ));
    }
    let table = if rows.is_empty() {
        String::new()
    } else {
        format!("<table style=\"border-collapse:collapse;margin-top:12px\">{rows}</table>")
    };
    format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">\
         <div style=\"border-left:4px solid #{color:06X};padding-left:12px\">\
         <h2 style=\"margin:0 0 8px\">{title}</h2>\
         <p style=\"margin:0;white-space:pre-wrap\">{description}</p>{table}\
         <p style=\"color:#555;font-size:12px;margin-top:12px\">{time} · {id}</p>\
         </div></body></html>",
        color = message.color & 0xFF_FFFF,
        title = escape(&message.title()),
        description = escape(&message.description),
        time = escape(&message.timestamp()),
        id = escape(&message.event_id),
    )
}

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
