//! Linking a channel with a link token, on both backends: a token links once, the account's
//! field rule refuses without changing anything, concurrent uses of one token link once, and
//! the upgrade replaces the tokens of chats linked before.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Backend, on_both_backends};
use crate::model::AccountId;
use crate::provider::{FieldMatch, LinkOutcome, LinkRequest};
use crate::store::Storage;

on_both_backends!(
    links_once_and_checks_the_field,
    concurrent_uses_of_one_token_link_once,
    the_upgrade_replaces_used_tokens_only,
);

const PROVIDER: &str = "telegram";
const FIELD: &str = "telegramUsername";

/// A request from chat `chat` by a user named `username` (or without a name).
fn request<'a>(token: &'a str, chat: i64, username: Option<&'a str>) -> LinkRequest<'a> {
    LinkRequest {
        link_token: token,
        state: json!({ "chatId": chat }),
        must_match: Some(FieldMatch {
            field: FIELD,
            value: username,
        }),
    }
}

async fn account(store: &dyn Storage, username: Option<&str>) -> AccountId {
    let fields: BTreeMap<String, String> = username
        .map(|name| (FIELD.to_string(), name.to_string()))
        .into_iter()
        .collect();
    store
        .create_account("Ann", None, "free", &fields, &[])
        .await
        .expect("account")
        .0
        .id
}

async fn link(store: &dyn Storage, account_id: &AccountId) -> (String, Option<Value>) {
    store.link_token(account_id, PROVIDER).await.expect("token")
}

async fn links_once_and_checks_the_field(backend: &Backend) {
    let store = backend.store();
    let store = &*store;
    let ann = account(store, Some("Ann_T")).await;
    let (first, state) = link(store, &ann).await;
    assert_eq!(state, None);

    // Someone else, or a user without a username: refused, nothing changes.
    for username in [Some("mallory"), Some("ann_t2"), None] {
        assert_eq!(
            store
                .link_account(PROVIDER, &request(&first, 6, username))
                .await
                .expect("link"),
            LinkOutcome::FieldMismatch {
                expected: "Ann_T".into()
            },
            "{username:?}"
        );
    }
    assert_eq!(link(store, &ann).await, (first.clone(), None));

    // The account's user, in any case: linked, and the token is replaced.
    assert_eq!(
        store
            .link_account(PROVIDER, &request(&first, 7, Some("aNN_t")))
            .await
            .expect("link"),
        LinkOutcome::Linked {
            account_name: "Ann".into(),
            previous_state: None
        }
    );
    let (second, state) = link(store, &ann).await;
    assert_ne!(second, first, "a token links once");
    assert_eq!(state, Some(json!({"chatId": 7})));

    // The used token and an unknown one change nothing.
    for token in [first.as_str(), "never-issued"] {
        assert_eq!(
            store
                .link_account(PROVIDER, &request(token, 8, Some("Ann_T")))
                .await
                .expect("link"),
            LinkOutcome::UnknownToken
        );
    }
    assert_eq!(
        link(store, &ann).await,
        (second.clone(), Some(json!({"chatId": 7})))
    );

    // The current token moves the link, and says where it was.
    assert_eq!(
        store
            .link_account(PROVIDER, &request(&second, 8, Some("Ann_T")))
            .await
            .expect("link"),
        LinkOutcome::Linked {
            account_name: "Ann".into(),
            previous_state: Some(json!({"chatId": 7}))
        }
    );
    let (third, state) = link(store, &ann).await;
    assert!(third != second && third != first);
    assert_eq!(state, Some(json!({"chatId": 8})));

    // Without the field on the account, anyone with the token may link.
    let bob = account(store, None).await;
    let (token, _) = link(store, &bob).await;
    assert!(matches!(
        store
            .link_account(PROVIDER, &request(&token, 9, None))
            .await
            .expect("link"),
        LinkOutcome::Linked { .. }
    ));
}

async fn concurrent_uses_of_one_token_link_once(backend: &Backend) {
    let store = backend.store();
    let ann = account(&*store, Some("ann_t")).await;
    let (token, _) = link(&*store, &ann).await;
    let tries = (1..=8).map(|chat| {
        let (store, token) = (store.clone(), token.clone());
        tokio::spawn(async move {
            let outcome = store
                .link_account(PROVIDER, &request(&token, chat, Some("ann_t")))
                .await
                .expect("link");
            (chat, outcome)
        })
    });
    let mut linked = Vec::new();
    for task in tries.collect::<Vec<_>>() {
        match task.await.expect("task") {
            (chat, LinkOutcome::Linked { previous_state, .. }) => {
                assert_eq!(previous_state, None);
                linked.push(chat);
            }
            (_, outcome) => assert_eq!(outcome, LinkOutcome::UnknownToken),
        }
    }
    assert_eq!(linked.len(), 1, "only one use links: {linked:?}");
    let (now, state) = link(&*store, &ann).await;
    assert_ne!(now, token);
    assert_eq!(state, Some(json!({ "chatId": linked[0] })));
}

/// The upgrade's migration on a chat linked before tokens were replaced on use, and on an
/// account never linked.
async fn the_upgrade_replaces_used_tokens_only(backend: &Backend) {
    let store = backend.store();
    let linked = account(&*store, Some("ann_t")).await;
    let unlinked = account(&*store, Some("bob_t")).await;
    let (used, _) = link(&*store, &linked).await;
    let (fresh, _) = link(&*store, &unlinked).await;
    // What linking stored before: the state, and the token left as it was.
    backend
        .execute(
            "UPDATE channel_links SET state = '{\"chatId\": 1}' WHERE link_token = $1",
            &[&used],
        )
        .await;
    backend
        .run_script(backend.migration("used_link_tokens"))
        .await;

    let (replaced, state) = link(&*store, &linked).await;
    assert_ne!(replaced, used);
    assert_eq!(state, Some(json!({"chatId": 1})), "still linked");
    assert!(
        replaced.len() == 32 && replaced.bytes().all(|b| b.is_ascii_hexdigit()),
        "{replaced}"
    );
    assert_eq!(link(&*store, &unlinked).await, (fresh, None));
    assert_eq!(
        store
            .link_account(PROVIDER, &request(&used, 2, Some("ann_t")))
            .await
            .expect("link"),
        LinkOutcome::UnknownToken
    );
}
