//! API keys: the list (name, prefix, created, last used), a new key shown once, renaming, and
//! revoking with a confirmation step that works without JavaScript.

use maud::{Markup, html};
use pingpilot_core::api::parse_key_name;
use pingpilot_core::model::{ApiKeyInfo, KeyId};
use poem::http::{StatusCode, header};
use poem::web::{Form, Path, Query};
use poem::{IntoResponse, Request, Route, get, handler};

use crate::PREFIX;
use crate::layout::{self, Nav, NoticeKind};
use crate::web::{self, CsrfOnly, DashError, Done, PageResult, SignedIn, csrf_field, see_other};

pub fn routes(route: Route) -> Route {
    route
        .at("/keys", get(keys_page).post(create_key))
        .at("/keys/:id/name", get(name_page).post(rename_key))
        .at("/keys/:id/revoke", get(confirm_revoke).post(revoke_key))
}

/// The create and rename forms: the name as typed.
#[derive(Debug, Default, serde::Deserialize)]
struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// The name as typed, or the error shown next to its field.
fn typed_name(form: &NameForm) -> Result<Option<String>, String> {
    parse_key_name(&form.name).map_err(|message| format!("This name {message}."))
}

fn keys_url() -> String {
    format!("{PREFIX}/keys")
}

#[handler]
async fn keys_page(user: SignedIn, Query(query): Query<Done>) -> PageResult {
    let notice = match query.done.as_deref() {
        Some("revoked") => Some(layout::notice(
            NoticeKind::Done,
            "The key is revoked: requests with it now get 401, and dashboard sessions signed in \
             with it have ended.",
        )),
        Some("renamed") => Some(layout::notice(NoticeKind::Done, "The key's name is saved.")),
        _ => None,
    };
    list_page(&user, notice, &NameForm::default(), None).await
}

/// The list with the create form, holding `form` and its `error` after a refused create.
async fn list_page(
    user: &SignedIn,
    notice: Option<Markup>,
    form: &NameForm,
    error: Option<&str>,
) -> PageResult {
    let keys = user.state.store().list_keys(&user.account.id).await?;
    let body = html! {
        h1 { "API keys" }
        @if let Some(notice) = notice { (notice) }
        (keys_table(user, &keys))
        (create_form(user, form, error))
        (sessions_form(user))
    };
    user.page(Some(Nav::Keys), "API keys", body).await
}

/// The key's name, or "No name" for a key without one.
fn key_name(key: &ApiKeyInfo) -> Markup {
    html! {
        @match &key.name {
            Some(name) => span.key-name { (name) },
            None => span.muted { "No name" },
        }
    }
}

/// How a key is called in a sentence or a title: its name and prefix, or its prefix alone.
fn key_label(key: &ApiKeyInfo) -> String {
    match &key.name {
        Some(name) => format!("“{name}” ({}…)", key.prefix),
        None => format!("{}…", key.prefix),
    }
}

/// The name field of the create and rename forms, with its error next to it.
fn name_field(value: &str, error: Option<&str>, label: &str) -> Markup {
    html! {
        label for="key-name" { (label) }
        @if let Some(error) = error { p.field-error #key-name-error { (error) } }
        input #key-name type="text" name="name" value=(value) maxlength="64"
            autocomplete="off" placeholder="billing server"
            aria-describedby={ @if error.is_some() { "key-name-error " } "key-name-hint" }
            aria-invalid=[error.map(|_| "true")];
        p.hint #key-name-hint {
            "What the key is for, so you can tell your keys apart: at most 64 characters. "
            "Leave it empty for no name."
        }
    }
}

fn keys_table(user: &SignedIn, keys: &[ApiKeyInfo]) -> Markup {
    html! {
        @if keys.is_empty() {
            p.muted { "This account has no API key. Create one to send events." }
        } @else {
            (layout::table(
                "Your API keys",
                "keys",
                html! {
                    tr {
                        th scope="col" { "Key" }
                        th.created scope="col" { "Created" }
                        th scope="col" { "Last used" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    }
                },
                html! {
                    @for key in keys {
                        tr {
                            // The name first, the prefix under it: the two columns a phone
                            // would squeeze are one.
                            td.key {
                                (key_name(key))
                                br;
                                code { (key.prefix) "…" }
                                @if signed_in_with(user, key) {
                                    " " span.muted { "(you signed in with it)" }
                                }
                            }
                            td.created { (layout::relative_time(key.created_at)) }
                            td {
                                @match key.last_used_at {
                                    Some(at) => (layout::relative_time(at)),
                                    None => span.muted { "Never" },
                                }
                            }
                            td.actions {
                                a href={ (keys_url()) "/" (key.id) "/name" }
                                    aria-label={ "Rename key " (key_label(key)) } { "Rename" }
                                " "
                                a href={ (keys_url()) "/" (key.id) "/revoke" }
                                    aria-label={ "Revoke key " (key_label(key)) } { "Revoke" }
                            }
                        }
                    }
                },
            ))
        }
        p.hint {
            "Only the first characters of each key are kept in clear. Revoking a key also ends "
            "every dashboard session signed in with it."
        }
    }
}

fn create_form(user: &SignedIn, form: &NameForm, error: Option<&str>) -> Markup {
    html! {
        form.card #create-key method="post" action=(keys_url()) {
            (csrf_field(&user.csrf))
            h2 { "Create a key" }
            p { "A new key for an app or a server. It is shown once, right after you create it." }
            (name_field(&form.name, error, "Name (optional)"))
            button.primary type="submit" { "Create a key" }
        }
    }
}

/// "Sign out everywhere": every session of the account ends, wherever it was signed in.
fn sessions_form(user: &SignedIn) -> Markup {
    html! {
        form.card method="post" action={ (PREFIX) "/logout/everywhere" } {
            (csrf_field(&user.csrf))
            h2 { "Dashboard sessions" }
            p {
                "Signed in on a device you no longer use, or a key may have leaked? End every "
                "dashboard session of this account, on every device, this one included. API "
                "keys keep working."
            }
            button.danger type="submit" { "Sign out everywhere" }
        }
    }
}

/// Whether this session was signed in with `key`.
fn signed_in_with(user: &SignedIn, key: &ApiKeyInfo) -> bool {
    user.key_id.as_deref() == Some(key.id.as_str())
}

#[handler]
async fn create_key(user: SignedIn, Form(form): Form<NameForm>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let name = match typed_name(&form) {
        Ok(name) => name,
        Err(error) => {
            let mut page = list_page(&user, None, &form, Some(&error)).await?;
            page.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            return Ok(page);
        }
    };
    let store = user.state.store();
    let (info, key) = store
        .create_key(&user.account.id, name.as_deref())
        .await?
        .ok_or(DashError::NotFound)?;
    let keys = store.list_keys(&user.account.id).await?;
    let body = html! {
        h1 { "API keys" }
        section.card.new-key aria-labelledby="new-key-title" {
            h2 #new-key-title {
                "Your new key "
                @if let Some(name) = &info.name { "“" (name) "” " }
                code { (info.prefix) "…" }
            }
            p {
                strong { "Copy it now: it is shown only this once." }
                " Only its hash is stored, so it cannot be shown again."
            }
            label for="new-key" { "New API key" }
            div.copy-row {
                input #new-key type="text" readonly value=(key) autocomplete="off" spellcheck="false";
                button #copy-key type="button" hidden { "Copy" }
            }
            p.hint #copy-done role="status" {}
            // Shows the copy button where the clipboard can be written (a file of its own: the
            // dashboard's content security policy runs no inline script).
            script src={ (PREFIX) "/assets/copy-key.js" } {}
            p { a href=(keys_url()) { "Done: back to the list" } }
        }
        (keys_table(&user, &keys))
    };
    // The key is on this page only: no cache may keep it.
    Ok(user
        .page(Some(Nav::Keys), "New API key", body)
        .await?
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

async fn own_key(user: &SignedIn, id: &str) -> PageResult<ApiKeyInfo> {
    let keys = user.state.store().list_keys(&user.account.id).await?;
    keys.into_iter()
        .find(|key| key.id == id)
        .ok_or(DashError::NotFound)
}

#[handler]
async fn name_page(user: SignedIn, Path(id): Path<String>) -> PageResult {
    let key = own_key(&user, &id).await?;
    let form = NameForm {
        name: key.name.clone().unwrap_or_default(),
        ..NameForm::default()
    };
    rename_page(&user, &key, &form, None).await
}

/// The rename form of `key`, holding `form` and its `error` after a refused rename.
async fn rename_page(
    user: &SignedIn,
    key: &ApiKeyInfo,
    form: &NameForm,
    error: Option<&str>,
) -> PageResult {
    let title = format!("Rename key {}", key_label(key));
    let body = html! {
        h1 { (title) }
        form.card method="post" action={ (keys_url()) "/" (key.id) "/name" } {
            (csrf_field(&user.csrf))
            (name_field(&form.name, error, "Name"))
            p.hint { "The key itself does not change: apps that use it keep working." }
            div.row {
                button.primary type="submit" { "Save the name" }
                a href=(keys_url()) { "Cancel" }
            }
        }
    };
    user.page(Some(Nav::Keys), &title, body).await
}

#[handler]
async fn rename_key(
    user: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<NameForm>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let name = match typed_name(&form) {
        Ok(name) => name,
        Err(error) => {
            let key = own_key(&user, &id).await?;
            let mut page = rename_page(&user, &key, &form, Some(&error)).await?;
            page.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            return Ok(page);
        }
    };
    // The rename itself is limited to this account's live keys: no list is read first.
    let key_id = KeyId::parse(&id).ok_or(DashError::NotFound)?;
    user.state
        .store()
        .rename_key(&key_id, &user.account.id, name.as_deref())
        .await?
        .ok_or(DashError::NotFound)?;
    Ok(see_other(&format!("{}?done=renamed", keys_url())))
}

#[handler]
async fn confirm_revoke(user: SignedIn, Path(id): Path<String>) -> PageResult {
    let key = own_key(&user, &id).await?;
    let title = format!("Revoke key {}", key_label(&key));
    let body = html! {
        h1 { (title) }
        form.card method="post" action={ (keys_url()) "/" (key.id) "/revoke" } {
            (csrf_field(&user.csrf))
            p {
                "Apps and servers that send events with " code { (key.prefix) "…" }
                " get 401 from the next request on. This cannot be undone."
            }
            p.hint {
                "Created " (layout::time(key.created_at)) ", last used "
                @match key.last_used_at {
                    Some(at) => (layout::time(at)),
                    None => "never",
                }
                "."
            }
            p.hint {
                @if signed_in_with(&user, &key) {
                    strong { "You signed in with this key:" }
                    " revoking it signs you out here too, and ends every other dashboard \
                     session signed in with it."
                } @else {
                    "Dashboard sessions signed in with this key end with it."
                }
            }
            div.row {
                button.danger type="submit" { "Revoke the key" }
                a href=(keys_url()) { "Cancel" }
            }
        }
    };
    user.page(Some(Nav::Keys), &title, body).await
}

#[handler]
async fn revoke_key(
    req: &Request,
    user: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let revoked = match KeyId::parse(&id) {
        Some(key_id) => {
            user.state
                .store()
                .revoke_key(&key_id, Some(&user.account.id))
                .await?
        }
        None => false,
    };
    if !revoked {
        return Err(DashError::NotFound);
    }
    if user.key_id.as_deref() != Some(id.as_str()) {
        return Ok(see_other(&format!("{}?done=revoked", keys_url())));
    }
    // This session went with its key: straight to the sign-in page, which says why.
    Ok(web::signed_out(
        req,
        &user.state,
        &format!("{PREFIX}/login?done=key-revoked"),
    ))
}
