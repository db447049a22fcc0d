//! Account settings: name, e-mail, every provider's account fields and channel switches, each
//! channel's state (Telegram's "Connect" link), and a test notification through every channel.
//! Validation is the API's (`PATCH /api/v1/account`): the form is turned into the same JSON.

use std::collections::{BTreeMap, BTreeSet};

use maud::{Markup, html};
use pingpilot_core::api::{FieldError, parse_account_update};
use pingpilot_core::app::SIGNING_SECRET;
use pingpilot_core::delivery::send_test_notification;
use pingpilot_core::model::Account;
use pingpilot_core::provider::{AccountField, DeliveryOutcome};
use pingpilot_core::service::accounts::{
    ChannelState, apply_account_update, channel_states, rotate_channel_secret,
};
use poem::http::StatusCode;
use poem::web::{Form, Path, Query};
use poem::{IntoResponse, Route, get, handler, post};
use serde_json::{Map, Value};

use crate::PREFIX;
use crate::layout::{self, Nav, NoticeKind};
use crate::web::{CsrfOnly, DashError, Done, PageResult, SignedIn, csrf_field, see_other};

pub fn routes(route: Route) -> Route {
    route
        .at("/settings", get(settings_page).post(save_settings))
        .at("/settings/test", post(test_notification))
        .at("/settings/channels/:provider/secret", post(replace_secret))
}

/// Form names besides the provider fields (which use their JSON names, e.g. `discordId`).
const NAME: &str = "name";
const EMAIL: &str = "email";
/// One hidden `channel=<provider>` per switch shown, so an unticked box (absent from the post)
/// still switches its channel off.
const CHANNEL_SHOWN: &str = "channel";
/// One `enabled=<provider>` per ticked box.
const CHANNEL_ENABLED: &str = "enabled";

/// What the form shows: text values by form name, and the ticked channels.
struct FormValues {
    text: BTreeMap<String, String>,
    enabled: BTreeSet<String>,
}

impl FormValues {
    fn from_account(account: &Account, channels: &[ChannelState]) -> Self {
        let mut text = account.fields.clone();
        text.insert(NAME.into(), account.name.clone());
        text.insert(EMAIL.into(), account.email.clone().unwrap_or_default());
        let enabled = channels
            .iter()
            .filter(|c| c.enabled)
            .map(|c| c.registration.id.to_string())
            .collect();
        Self { text, enabled }
    }

    fn from_post(pairs: &[(String, String)]) -> Self {
        let text = pairs
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), CHANNEL_SHOWN | CHANNEL_ENABLED))
            .cloned()
            .collect();
        let enabled = values_of(pairs, CHANNEL_ENABLED)
            .map(str::to_string)
            .collect();
        Self { text, enabled }
    }

    fn text(&self, name: &str) -> &str {
        self.text.get(name).map_or("", String::as_str)
    }
}

fn values_of<'p>(pairs: &'p [(String, String)], name: &'p str) -> impl Iterator<Item = &'p str> {
    pairs
        .iter()
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The `PATCH /account` body a posted form stands for: only what the form sent; empty text
/// clears a value (`null`).
fn update_body(pairs: &[(String, String)]) -> Value {
    let text_value = |text: &str| {
        if text.trim().is_empty() {
            Value::Null
        } else {
            Value::String(text.to_string())
        }
    };
    let mut body = Map::new();
    let editable = [NAME, EMAIL]
        .into_iter()
        .chain(pingpilot_core::provider::account_fields().map(|(_, field)| field.name));
    for name in editable {
        if let Some(text) = values_of(pairs, name).last() {
            body.insert(name.to_string(), text_value(text));
        }
    }
    let enabled: BTreeSet<&str> = values_of(pairs, CHANNEL_ENABLED).collect();
    let switches: Map<String, Value> = values_of(pairs, CHANNEL_SHOWN)
        .map(|id| (id.to_string(), Value::Bool(enabled.contains(id))))
        .collect();
    if !switches.is_empty() {
        body.insert("channels".into(), Value::Object(switches));
    }
    Value::Object(body)
}

#[handler]
async fn settings_page(user: SignedIn, Query(query): Query<Done>) -> PageResult {
    let channels = channel_states(&user.state, &user.account).await?;
    let values = FormValues::from_account(&user.account, &channels);
    let notice = match query.done.as_deref() {
        Some("saved") => Some("Your settings are saved."),
        Some("secret") => Some(
            "A new signing secret is in use: deliveries from now on are signed with it, so give \
             it to your receivers.",
        ),
        _ => None,
    }
    .map(|text| layout::notice(NoticeKind::Done, text));
    render(&user, &channels, &values, &[], notice, None).await
}

#[handler]
async fn save_settings(user: SignedIn, Form(pairs): Form<Vec<(String, String)>>) -> PageResult {
    user.check_csrf(values_of(&pairs, "csrf").next().unwrap_or_default())?;
    let fields: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "csrf").collect();
    match parse_account_update(&user.state, &update_body(&fields)).await {
        Ok(changes) => {
            apply_account_update(&user.state, &user.account.id, &changes)
                .await?
                .ok_or(DashError::NotFound)?;
            Ok(see_other(&format!("{PREFIX}/settings?done=saved")))
        }
        Err(errors) => {
            let channels = channel_states(&user.state, &user.account).await?;
            let values = FormValues::from_post(&fields);
            let notice = problems(&user, &errors);
            let page = render(&user, &channels, &values, &errors, Some(notice), None).await?;
            Ok(page
                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response())
        }
    }
}

#[handler]
async fn replace_secret(
    user: SignedIn,
    Path(provider): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    if !rotate_channel_secret(&user.state, &user.account, &provider).await? {
        return Err(DashError::NotFound);
    }
    Ok(see_other(&format!("{PREFIX}/settings?done=secret")))
}

#[handler]
async fn test_notification(user: SignedIn, Form(form): Form<CsrfOnly>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let answers = send_test_notification(&user.state, &user.account).await?;
    let channels = channel_states(&user.state, &user.account).await?;
    let values = FormValues::from_account(&user.account, &channels);
    let results = test_results(&channels, &answers);
    render(&user, &channels, &values, &[], None, Some(results)).await
}

/// Every violation, each with the label of its field and a link to it.
fn problems(user: &SignedIn, errors: &[FieldError]) -> Markup {
    html! {
        div.notice.problem role="alert" {
            p { "The settings were not saved. Please check:" }
            ul {
                @for error in errors {
                    @let (label, target) = field_label(user, &error.path);
                    li {
                        a href={ "#" (target) } { (label) }
                        ": " (field_error_text(&error.path, &error.message))
                    }
                }
            }
        }
    }
}

/// The label of the field a violation's path names, and the id of its input.
fn field_label(user: &SignedIn, path: &str) -> (String, String) {
    if let Some(id) = path.strip_prefix("channels.") {
        let name = user
            .state
            .provider(id)
            .map_or(id, |entry| entry.registration.display_name);
        return (name.to_string(), format!("enabled-{id}"));
    }
    let label = match path {
        NAME => "Name".to_string(),
        EMAIL => "E-mail".to_string(),
        _ => pingpilot_core::provider::account_fields()
            .find(|(_, field)| field.name == path)
            .map_or_else(
                || path.to_string(),
                |(_, field)| FieldWords::of(field).label,
            ),
    };
    (label, path.to_string())
}

async fn render(
    user: &SignedIn,
    channels: &[ChannelState],
    values: &FormValues,
    errors: &[FieldError],
    notice: Option<Markup>,
    results: Option<Markup>,
) -> PageResult {
    let error_at = |path: &str| {
        errors
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.message.as_str())
    };
    let body = html! {
        h1 { "Settings" }
        @if let Some(notice) = notice { (notice) }
        @if let Some(results) = results { (results) }
        form.card.settings method="post" action={ (PREFIX) "/settings" } novalidate {
            (csrf_field(&user.csrf))
            h2 { "Profile" }
            (text_input(NAME, "Name", "text", values.text(NAME), Some("Shown in the dashboard and in messages from the bots."), error_at(NAME)))
            (text_input(EMAIL, "E-mail", "email", values.text(EMAIL), Some("Optional; leave empty to remove it."), error_at(EMAIL)))
            @for channel in channels {
                (channel_fieldset(channel, values, &error_at))
            }
            button.primary type="submit" { "Save settings" }
        }
        (signing_secrets(user, channels))
        section.card {
            h2 { "Test notification" }
            p {
                "Sends a test message through every enabled channel right now and shows what each "
                "answered. It is not stored as an event and does not count against your quota."
            }
            form method="post" action={ (PREFIX) "/settings/test" } {
                (csrf_field(&user.csrf))
                button type="submit" { "Send test notification" }
            }
        }
    };
    user.page(Some(Nav::Settings), "Settings", body).await
}

fn text_input(
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    hint: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let hint_id = format!("{name}-hint");
    let error_id = format!("{name}-error");
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    html! {
        label for=(name) { (label) }
        input #(name) type=(kind) name=(name) value=(value) aria-describedby=(described)
            aria-invalid=[error.map(|_| "true")];
        @if let Some(hint) = hint { p.hint #(hint_id) { (hint) } }
        @if let Some(error) = error { p.field-error #(error_id) { (field_error_text(name, error)) } }
    }
}

/// A provider's channel: its switch, its account fields and its state.
fn channel_fieldset<'e>(
    channel: &ChannelState,
    values: &FormValues,
    error_at: &impl Fn(&str) -> Option<&'e str>,
) -> Markup {
    let registration = channel.registration;
    let id = registration.id;
    let switch_id = format!("enabled-{id}");
    html! {
        fieldset.channel {
            legend { (registration.display_name) }
            p.hint { (registration.description) }
            input type="hidden" name=(CHANNEL_SHOWN) value=(id);
            div.switch {
                input #(switch_id) type="checkbox" name=(CHANNEL_ENABLED) value=(id)
                    checked[values.enabled.contains(id)];
                label for=(switch_id) { "Send notifications through " (registration.display_name) }
            }
            @if let Some(error) = error_at(&format!("channels.{id}")) {
                p.field-error { (field_error_text(id, error)) }
            }
            @for field in registration.account_fields {
                (field_input(field, values.text(field.name), error_at(field.name)))
            }
            (channel_state(channel))
        }
    }
}

/// What the dashboard says of an account field: a label, where to find the value, and an
/// example, from its JSON schema's `title` and `description` (see [`AccountField::schema`]).
struct FieldWords {
    label: String,
    help: Option<String>,
}

impl FieldWords {
    fn of(field: &AccountField) -> Self {
        let schema = serde_json::to_value((field.schema)()).unwrap_or_default();
        let text = |key: &str| schema.get(key).and_then(Value::as_str).map(str::to_string);
        match text("title") {
            Some(label) => Self {
                label,
                help: text("description"),
            },
            None => Self {
                label: field.description.to_string(),
                help: None,
            },
        }
    }
}

fn field_input(field: &AccountField, value: &str, error: Option<&str>) -> Markup {
    let words = FieldWords::of(field);
    let hint_id = format!("{}-hint", field.name);
    let error_id = format!("{}-error", field.name);
    let described = match error {
        Some(_) => format!("{error_id} {hint_id}"),
        None => hint_id.clone(),
    };
    html! {
        label for=(field.name) { (words.label) }
        // The error next to its field, before the help: it is what to read first.
        @if let Some(error) = error {
            p.field-error #(error_id) { (field_error_text(field.name, error)) }
        }
        input #(field.name) type="text" name=(field.name) value=(value)
            placeholder=(field.example) autocomplete="off" aria-describedby=(described)
            aria-invalid=[error.map(|_| "true")];
        p.hint #(hint_id) {
            @if let Some(help) = &words.help { (help) " " }
            "For example " code { (field.example) } ". Leave it empty to remove it."
        }
    }
}

/// A violation of a field in words for people: the API's message says the field's JSON name
/// first (`discordId must be …`), which the label above the field already says.
fn field_error_text(name: &str, message: &str) -> String {
    let rest = message
        .strip_prefix(name)
        .map(str::trim_start)
        .unwrap_or(message);
    let mut text = String::with_capacity(rest.len() + 8);
    if rest.starts_with("must") || rest.starts_with("is ") {
        text.push_str("This ");
        text.push_str(rest);
    } else {
        let mut chars = rest.chars();
        if let Some(first) = chars.next() {
            text.extend(first.to_uppercase());
            text.push_str(chars.as_str());
        }
    }
    // The API's `null` is the form's empty field.
    if let Some(start) = text.strip_suffix(" or null") {
        text = format!("{start} or empty");
    }
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The secrets of the channels that sign what they send, each with a button that replaces it
/// (forms of their own, outside the settings form, so Enter there never replaces a secret).
fn signing_secrets(user: &SignedIn, channels: &[ChannelState]) -> Markup {
    html! {
        @for channel in channels {
            @if let Some(secret) = channel.status.extra.get(SIGNING_SECRET).and_then(Value::as_str) {
                @let id = channel.registration.id;
                @let title_id = format!("secret-{id}-title");
                section.card aria-labelledby=(title_id) {
                    h2 #(title_id) { (channel.registration.display_name) " signing secret" }
                    p {
                        "Your receiver checks the " code { "webhook-signature" }
                        " header of each delivery with this secret (the Standard Webhooks "
                        "libraries do it in one call). Keep it private."
                    }
                    p { code.secret { (secret) } }
                    form method="post" action={ (PREFIX) "/settings/channels/" (id) "/secret" } {
                        (csrf_field(&user.csrf))
                        button type="submit" { "Replace the secret" }
                    }
                }
            }
        }
    }
}

/// Whether the channel delivers now, in one line, with the one action it needs, if any.
fn channel_state(channel: &ChannelState) -> Markup {
    let extra = &channel.status.extra;
    let linked = extra.get("linked").and_then(Value::as_bool);
    let link_url = extra.get("linkUrl").and_then(Value::as_str);
    let name = channel.registration.display_name;
    html! {
        div.channel-state {
            p {
                @if !channel.enabled {
                    span.badge.pending { "Off" } " Events are not sent through " (name) "."
                } @else if let Some(field) = channel.missing.first() {
                    span.badge.waiting { "Not ready" }
                    " Enter your " (FieldWords::of(field).label) " above and save."
                } @else if let (Some(false), Some(url)) = (linked, link_url) {
                    span.badge.waiting { "Not connected" }
                    " Open the link from your " (name) " account and press Start. "
                    a.button href=(url) rel="noopener noreferrer" target="_blank" {
                        "Connect " (name)
                    }
                } @else if let Some(reason) = &channel.status.waiting {
                    span.badge.waiting { "Not ready" } " " (layout::without_links(reason))
                } @else if let (Some(true), Some(url)) = (linked, link_url) {
                    span.badge.delivered { "Connected" } " Notifications go to your chat. "
                    a href=(url) rel="noopener noreferrer" target="_blank" {
                        "Move them to another chat"
                    }
                } @else {
                    span.badge.delivered { "Ready" } " Events are sent through " (name) "."
                }
            }
            @if channel.enabled && channel.missing.is_empty() && link_url.is_some() && linked.is_some() {
                // The link works once, so a leaked old link cannot take the channel over.
                p.hint { "Each link works once: after use, a new one is shown here." }
            }
        }
    }
}

/// What each channel answered to the test notification.
fn test_results(channels: &[ChannelState], answers: &[(&'static str, DeliveryOutcome)]) -> Markup {
    html! {
        section.card.test-results role="status" aria-labelledby="test-results-title" {
            h2 #test-results-title { "Test notification sent" }
            @if answers.is_empty() {
                p { "No channel is enabled, so nothing was sent. Switch a channel on below." }
            }
            ul {
                @for channel in channels {
                    li {
                        strong { (channel.registration.display_name) ": " }
                        @match answers.iter().find(|(id, _)| *id == channel.registration.id) {
                            Some((_, outcome)) => (outcome_text(outcome)),
                            None => { span.badge.pending { "Off" } " Switched off: not sent." },
                        }
                    }
                }
            }
        }
    }
}

fn outcome_text(outcome: &DeliveryOutcome) -> Markup {
    let status = |code: &Option<u16>| code.map(|c| format!(" (HTTP {c})")).unwrap_or_default();
    match outcome {
        DeliveryOutcome::Delivered { http_status } => html! {
            span.badge.delivered { "Delivered" } (status(http_status))
        },
        DeliveryOutcome::Failed { http_status, error } => html! {
            span.badge.failed { "Failed" } (status(http_status)) ": " (error)
        },
        DeliveryOutcome::Retry {
            http_status, error, ..
        } => html! {
            span.badge.retrying { "Failed for now" } (status(http_status)) ": " (error)
            " A real event would be tried again."
        },
        DeliveryOutcome::Wait { reason } => html! {
            span.badge.waiting { "Waiting" } " " (reason)
        },
        DeliveryOutcome::Throttled { retry_after } => html! {
            span.badge.waiting { "Throttled" }
            " The relay's own rate limit for this channel is used up; try again in "
            (retry_after.as_secs().max(1)) " s."
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_are_said_without_the_json_name() {
        assert_eq!(
            field_error_text(
                "discordId",
                "discordId must be a Discord user ID: 17 to 20 digits"
            ),
            "This must be a Discord user ID: 17 to 20 digits."
        );
        assert_eq!(
            field_error_text("email", "must be an e-mail address or null"),
            "This must be an e-mail address or empty."
        );
        assert_eq!(
            field_error_text("webhookUrl", "the address is private."),
            "The address is private."
        );
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_form_becomes_the_api_body() {
        let body = update_body(&pairs(&[
            ("name", "Ann"),
            ("email", "  "),
            ("channel", "discord"),
            ("channel", "telegram"),
            ("enabled", "telegram"),
        ]));
        assert_eq!(
            body,
            serde_json::json!({
                "name": "Ann",
                "email": null,
                "channels": {"discord": false, "telegram": true},
            })
        );
    }

    #[test]
    fn absent_fields_stay_as_they_are() {
        assert_eq!(update_body(&pairs(&[])), serde_json::json!({}));
    }

    #[test]
    fn outcomes_read_as_answers() {
        let text = outcome_text(&DeliveryOutcome::Delivered {
            http_status: Some(200),
        })
        .into_string();
        assert!(
            text.contains("Delivered") && text.contains("HTTP 200"),
            "{text}"
        );
        let text = outcome_text(&DeliveryOutcome::Wait {
            reason: "chat not linked".into(),
        })
        .into_string();
        assert!(
            text.contains("Waiting") && text.contains("chat not linked"),
            "{text}"
        );
    }
}
