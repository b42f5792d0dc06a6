//! Hostile input, generated (proptest): the callback body parser (JSON and
//! PHP-bracket forms, whatever the `Content-Type` says; every published
//! shape of one callback parses to the same credentials), the invitee row parser (fields and whole CSV/JSONL
//! files) and the mail built from hostile invitee fields. Every input gets
//! an answer, never a panic; what is accepted holds only valid values; HTML
//! in a field is escaped in the mail and no field can add a header.
//!
//! Cases per property: `PROPTEST_CASES` (default 256; `.ci/run` uses more).
//! A failing case is saved in `tests/proptest-regressions/hostile_input.txt`
//! and kept in the repository, so it is replayed first on every later run.

use std::collections::BTreeMap;

use mydex_connector::config::Settings;
use mydex_connector::domain::Invitee;
use mydex_connector::intake::{Format, Rows};
use mydex_connector::mydex::callback_body::{Callback, Encoding, parse, parse_request};
use mydex_connector::notify::email::{MailContext, Templates, build_message};
use mydex_test_support::repo_root;
use proptest::prelude::*;

/// Strings rich in what breaks parsers and mails: brackets, quotes, angle
/// brackets, CR/LF, percent escapes, NUL, non-ASCII.
fn nasty() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "([a-z0-9@.]|\\[|\\]|=|&|%[0-9A-F]{2}|%|<|>|\"|'|\r|\n|\r\n|\\x00|é|💥|<script>|Bcc: x@y.z|\\{\\{|\\}\\}|;| ){0,80}",
    )
    .expect("a valid regex")
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        nasty().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(callback_key(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys of real callbacks, and others.
fn callback_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("type".to_string()),
        Just("uid".to_string()),
        Just("mydexid".to_string()),
        Just("connection_id".to_string()),
        Just("key".to_string()),
        Just("linking_token".to_string()),
        Just("permissions".to_string()),
        Just("version".to_string()),
        Just("dataset".to_string()),
        Just("action".to_string()),
        nasty(),
    ]
}

/// The saved cases, at their place in the repository whatever the working
/// directory the tests run in (proptest reads a relative path from there).
fn regressions_file() -> &'static str {
    let path = repo_root().join("tests/proptest-regressions/hostile_input.txt");
    Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
}

/// Cases from `PROPTEST_CASES` (default 256); failures kept in the repo.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(regressions_file()),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn callback_bodies_of_any_bytes_get_an_answer(body in prop::collection::vec(any::<u8>(), 0..2048), put in any::<bool>()) {
        for enc in [Encoding::Json, Encoding::Form] {
            if let Err(e) = parse(enc, &body, put, "45678") {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn callback_json_objects_get_an_answer(value in json_value(), put in any::<bool>()) {
        let body = serde_json::to_vec(&value).expect("serialises");
        if let Ok((_, redacted)) = parse(Encoding::Json, &body, put, "45678") {
            // What is kept for the log has no connection key in clear.
            if let Some(key) = value.get("key").and_then(|k| k.as_str()).filter(|k| k.len() > 8) {
                prop_assert!(!redacted.to_string().contains(key));
            }
        }
    }

    #[test]
    fn php_bracket_forms_get_an_answer(form in nasty(), put in any::<bool>()) {
        let _ = parse(Encoding::Form, form.as_bytes(), put, "45678");
        let _ = mydex_connector::mydex::php_form::parse(form.as_bytes());
    }

    #[test]
    fn invitee_fields_accepted_only_when_valid(
        email in prop_oneof![nasty(), "[a-z]{1,10}@[a-z]{1,10}\\.(com|org)"],
        name in nasty(),
        mydexid in prop_oneof![nasty(), "[a-z][a-z0-9]{3,20}"],
        extra in prop::collection::vec((nasty(), nasty()), 0..4),
    ) {
        let mut fields = vec![
            ("email".to_string(), email.clone()),
            ("name".to_string(), name),
            ("mydexid".to_string(), mydexid),
        ];
        fields.extend(extra);
        match Invitee::from_fields(fields) {
            Ok(inv) => {
                let e = inv.email.as_str();
                prop_assert!(e.contains('@'));
                prop_assert!(!e.chars().any(|c| c.is_control() || c.is_whitespace()), "{e:?}");
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn whole_files_of_any_bytes_are_read_row_by_row(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        csv in any::<bool>(),
        header in prop_oneof![Just("email,name,external_ref\n".to_string()), nasty()],
    ) {
        let mut input = if csv { header.into_bytes() } else { Vec::new() };
        input.extend(body);
        let format = if csv { Format::Csv } else { Format::JsonLines };
        if let Ok(rows) = Rows::new(&input[..], format) {
            let mut last = 0;
            for row in rows.take(10_000) {
                match row {
                    Ok(r) => {
                        prop_assert!(r.line > last, "line numbers go up");
                        last = r.line;
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
        }
    }
}

/// Templates of a real config (the built-in ones) and its sender.
fn templates() -> (Templates, lettre::message::Mailbox) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    std::fs::write(p.join("client_secret"), "s").expect("write");
    std::fs::write(p.join("connection_token"), "t").expect("write");
    std::fs::write(p.join("store.key"), [7u8; 32]).expect("write");
    std::fs::write(
        p.join("c.toml"),
        r#"[mydex]
api_url = "http://127.0.0.1:9"
token_url = "http://127.0.0.1:9/oauth2/token"
client_id = "c"
client_secret_file = "client_secret"
connection_nid = "45678"
connection_token_file = "connection_token"
[callback]
public_url = "https://connect.example.com"
[smtp]
url = "smtp://127.0.0.1:25"
from = "Example Energy <connect@example.com>"
[store]
path = "db"
key_file = "store.key"
[queue]
dir = "queue"
[[campaign]]
name = "c1"
subject = "Connect {{ name }} ({{ external_ref }})"
"#,
    )
    .expect("write");
    let settings = Settings::load(&p.join("c.toml")).expect("the config loads");
    let t = Templates::load(
        &settings.campaigns,
        &settings.organisation,
        settings.invitations.link_ttl,
    )
    .expect("templates load");
    (t, settings.smtp.from.clone())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_invitee_fields_cannot_inject_html_or_headers(
        name in nasty(),
        external_ref in nasty(),
        var in nasty(),
    ) {
        let (templates, from) = templates();
        let vars: BTreeMap<String, String> = [("tariff".to_string(), var)].into();
        let ctx = MailContext {
            name: Some(&name),
            email: "person@example.com",
            external_ref: Some(&external_ref),
            mydexid: None,
            campaign: "c1",
            kind: "connect",
            version: 1,
            reminder: 0,
            max_reminders: 2,
            link: "https://sbx-api.mydex.org/ftc/begin/AbC123",
            qr_src: "cid:qr-1@example.com",
            logo_src: None,
            unsubscribe_url: "http://127.0.0.1:1/unsubscribe/u00",
            subject: String::new(),
            vars: &vars,
        };
        let rendered = templates.render("c1", ctx).expect("renders");
        prop_assert!(!rendered.subject.contains('\r') && !rendered.subject.contains('\n'));
        prop_assert!(!rendered.html.contains("<script>"), "HTML escaped");
        prop_assert!(rendered.html.contains("https://sbx-api.mydex.org/ftc/begin/AbC123"));
        let headers = mydex_connector::notify::email::MailHeaders {
            list_unsubscribe: "<http://127.0.0.1:1/unsubscribe/u00>".into(),
            envelope_from: None,
            message_token: None,
        };
        let msg = build_message(&headers, &from, Some(&name), "person@example.com", 1, &rendered, &[mydex_connector::notify::email::InlineImage { content_id: "qr-1@example.com".into(), content_type: "image/png", bytes: vec![0x89, b'P', b'N', b'G'] }])
            .expect("a message");
        let raw = String::from_utf8_lossy(&msg.formatted()).to_string();
        let head = raw.split("\r\n\r\n").next().unwrap_or("");
        for line in head.split("\r\n") {
            let is_continuation = line.starts_with(' ') || line.starts_with('\t');
            let known = ["From:", "To:", "Subject:", "Date:", "Message-ID:", "MIME-Version:", "Content-Type:", "Content-Transfer-Encoding:", "List-Unsubscribe:", "List-Unsubscribe-Post:"]
                .iter()
                .any(|h| line.starts_with(h));
            prop_assert!(is_continuation || known, "unexpected header line {line:?}");
        }
    }
}

/// `Content-Type` headers, right, wrong, odd and absent.
fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("application/json; charset=utf-8".to_string())),
        Just(Some("application/x-www-form-urlencoded".to_string())),
        Just(Some("text/plain".to_string())),
        Just(Some("multipart/form-data; boundary=x".to_string())),
        nasty().prop_map(Some),
    ]
}

/// Bodies that look like callbacks in either encoding, and noise.
fn callback_like_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("serialises")),
        nasty().prop_map(|s| format!(
            "connection_id=1-45678&key=k&fields[x][0][][access][r][a]=1&{s}"
        )
        .into_bytes()),
        nasty().prop_map(|s| format!(
            "  {{\"connection_id\":\"1-45678\",\"key\":\"k\",\"uid\":{s}"
        )
        .into_bytes()),
        nasty().prop_map(String::into_bytes),
    ]
}

/// One shape of a callback: its name, `Content-Type`, body, and the uid sent.
type Shaped<'a> = (&'a str, Option<&'a str>, Vec<u8>, Option<String>);

/// One dataset's grant: read, write, and a `value` attribute.
type Grant = (bool, bool, String);

fn grants() -> impl Strategy<Value = BTreeMap<String, Grant>> {
    prop::collection::btree_map(
        prop_oneof![
            Just("ds_personal_details".to_string()),
            Just("ds_home".to_string()),
            Just("ds_events".to_string()),
            Just("ds_contact_details".to_string()),
        ],
        (any::<bool>(), any::<bool>(), nasty()),
        0..4,
    )
}

/// The published layout: `{"field_ds_x": {"0": {"": {"access": …, "value": …}}}}`.
fn published_fields(g: &BTreeMap<String, Grant>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (ds, (r, w, v)) in g {
        out.insert(
            format!("field_{ds}"),
            serde_json::json!({"0": {"": {
                "access": {"r": {"a": *r as u8, "s": "A"}, "w": {"a": *w as u8, "s": "R"}},
                "value": v
            }}}),
        );
    }
    serde_json::Value::Object(out)
}

/// The list layout: one leaf per element.
fn list_fields(g: &BTreeMap<String, Grant>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (ds, (r, w, _)) in g {
        out.insert(
            format!("field_{ds}"),
            serde_json::json!([[{"access": {"r": {"a": *r as u8}}}, {"access": {"w": {"a": *w as u8}}}]]),
        );
    }
    serde_json::Value::Object(out)
}

/// The PHP-bracket pairs of the published layout.
fn form_fields(g: &BTreeMap<String, Grant>, pairs: &mut Vec<(String, String)>) {
    for (ds, (r, w, v)) in g {
        let p = format!("fields[field_{ds}][0][]");
        pairs.push((format!("{p}[access][r][a]"), (*r as u8).to_string()));
        pairs.push((format!("{p}[access][r][s]"), "A".into()));
        pairs.push((format!("{p}[access][w][a]"), (*w as u8).to_string()));
        pairs.push((format!("{p}[access][w][s]"), "R".into()));
        pairs.push((format!("{p}[value]"), v.clone()));
    }
}

fn form(pairs: &[(String, String)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_request_answers_any_type_and_body(
        ct in content_type(),
        body in callback_like_body(),
        put in any::<bool>(),
    ) {
        match parse_request(ct.as_deref(), &body, put, "45678") {
            Ok((Callback::Connect(c) | Callback::Update(c), _)) => {
                prop_assert!(c.connection_id.ends_with("-45678"));
                prop_assert!(c.uid > 0);
                prop_assert!(put || c.key.is_some());
            }
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn every_published_shape_parses_to_the_same_credentials(
        uid in 1u64..=u64::MAX / 2,
        key in "[!-~]{1,100}",
        mydexid in "[A-Za-z0-9_. é-]{0,40}[A-Za-z0-9é]",
        token in "[A-Za-z0-9_-]{1,40}",
        g in grants(),
        put in any::<bool>(),
    ) {
        let conn = format!("{uid}-45678");
        let key_pair = |pairs: &mut Vec<(String, String)>| if !put { pairs.push(("key".into(), key.clone())) };
        let json_body = |uid_v: Option<serde_json::Value>, fields: serde_json::Value| {
            let mut m = serde_json::Map::new();
            if let Some(u) = uid_v { m.insert("uid".into(), u); }
            m.insert("mydexid".into(), mydexid.clone().into());
            if !put { m.insert("key".into(), key.clone().into()); }
            m.insert("connection_id".into(), conn.clone().into());
            m.insert("fields".into(), fields);
            m.insert("linking_token".into(), token.clone().into());
            serde_json::to_vec(&m).expect("serialises")
        };
        let form_body = |uid_v: Option<String>| {
            let mut pairs = vec![("connection_id".to_string(), conn.clone())];
            if let Some(u) = uid_v { pairs.push(("uid".into(), u)); }
            pairs.push(("mydexid".into(), mydexid.clone()));
            key_pair(&mut pairs);
            form_fields(&g, &mut pairs);
            pairs.push(("linking_token".into(), token.clone()));
            form(&pairs)
        };
        const JSON: Option<&str> = Some("application/json");
        const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
        let shapes: Vec<Shaped> = vec![
            ("json", JSON, json_body(Some(uid.into()), list_fields(&g)), Some(uid.to_string())),
            ("json-string-uid", JSON, json_body(Some(uid.to_string().into()), published_fields(&g)), Some(uid.to_string())),
            ("form", FORM, form_body(Some(uid.to_string())), Some(uid.to_string())),
            ("form-untyped", None, form_body(Some(uid.to_string())), Some(uid.to_string())),
            ("json-as-form", FORM, json_body(Some(uid.into()), published_fields(&g)), Some(uid.to_string())),
            ("json-as-text", Some("text/plain"), json_body(None, published_fields(&g)), None),
            ("json-untyped", None, json_body(Some(uid.into()), list_fields(&g)), Some(uid.to_string())),
            ("no-uid", FORM, form_body(None), None),
            ("uid-mismatch", FORM, form_body(Some((uid + 1).to_string())), Some((uid + 1).to_string())),
        ];
        let readable: Vec<&str> = g.iter().filter(|(_, (r, _, _))| *r).map(|(k, _)| k.as_str()).collect();
        let writable: Vec<&str> = g.iter().filter(|(_, (_, w, _))| *w).map(|(k, _)| k.as_str()).collect();
        for (name, ct, body, uid_sent) in shapes {
            let parsed = parse_request(ct, &body, put, "45678");
            let c = match parsed {
                Ok((Callback::Connect(c), _)) if !put => c,
                Ok((Callback::Update(c), _)) if put => c,
                other => return Err(TestCaseError::fail(format!("{name}: {other:?}"))),
            };
            prop_assert_eq!(c.uid, uid, "{}", name);
            prop_assert_eq!(&c.connection_id, &conn, "{}", name);
            prop_assert_eq!(&c.uid_sent, &uid_sent, "{}", name);
            prop_assert_eq!(c.uid_mismatch().is_some(), name == "uid-mismatch", "{}", name);
            prop_assert_eq!(c.mydexid.as_ref().map(|m| m.as_str()), Some(mydexid.trim()), "{}", name);
            prop_assert_eq!(c.linking_token.as_deref(), Some(token.as_str()), "{}", name);
            use secrecy::ExposeSecret;
            prop_assert_eq!(c.key.as_ref().map(|k| k.expose_secret().to_string()), (!put).then(|| key.clone()), "{}", name);
            let grants = c.grants();
            prop_assert_eq!(grants.readable(), readable.clone(), "{}", name);
            prop_assert_eq!(grants.writable(), writable.clone(), "{}", name);
        }
    }
}
