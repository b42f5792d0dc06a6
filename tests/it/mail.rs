//! What a member reads, through the real binary, the real SMTP server and
//! mail-parser: the built-in invitation for a row with and without a name
//! (greeting, organisation, the link's lifetime in words, once-only
//! wording, the contact as a `mailto:` link, the link whole in the text
//! part and in the HTML part and its QR code); `mail preview` writing
//! files that parse as that mail with the placeholder link, every kind,
//! DKIM-signed and with the logo inline; `mail test` arriving at the SMTP
//! server with "[test]" and a DKIM signature that verifies; and each wrong
//! input refused with a clear error and the exit code of DESIGN.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mail_parser::MimeHeaders;
use mydex_test_support::*;

const ORG: &str = r#"
[organisation]
name = "Northwind Power"
website = "https://northwind.example"
contact = "Call 0800 123 456 or write to help@northwind.example"
privacy_url = "https://northwind.example/privacy"
"#;

const PLACEHOLDER: &str = "https://placeholder.invalid/ftc/begin/PREVIEW-PLACEHOLDER-not-a-real-link-the-real-mail-carries-a-one-time-link-from-Mydex";

fn with_org() -> Options {
    Options {
        extra_config: ORG.into(),
        ..Default::default()
    }
}

/// The text and HTML parts of the message at `path`, decoded.
fn parts(path: &Path) -> (String, String) {
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a parseable message");
    (
        msg.body_text(0).expect("a text part").to_string(),
        msg.body_html(0).expect("an HTML part").to_string(),
    )
}

fn header(path: &Path, name: &str) -> String {
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    msg.header_raw(name).unwrap_or_default().trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// What every built-in first invitation says, whoever it greets.
fn says_what_a_member_needs(text: &str, html: &str, ttl_words: &str) {
    for (part, body) in [("text", text), ("html", html)] {
        for want in [
            "Northwind Power",
            ttl_words,
            "works only once",
            "Personal Data Store is your own secure space online",
            "Register with Mydex, or log in",
            "Private Key",
            "nobody can recover it",
            "end the connection",
        ] {
            assert!(body.contains(want), "{part} lacks {want:?}:\n{body}");
        }
        assert!(
            !body.contains("Hello You") && !body.contains("Hello ,"),
            "{part}: {body}"
        );
        assert!(!body.contains("expires in 24 hours") || ttl_words == "24 hours");
    }
    assert!(
        text.contains("Call 0800 123 456 or write to help@northwind.example"),
        "{text}"
    );
    assert!(
        html.contains("<a href=\"mailto:help@northwind.example\">help@northwind.example</a>"),
        "{html}"
    );
    assert!(html.contains("https://northwind.example/privacy"), "{html}");
    assert!(html.contains("To open this on another device"), "{html}");
    assert!(html.contains("name=\"viewport\""), "{html}");
}

/// The link stands alone on a line of the text part (nothing wraps or
/// breaks it) and is the HTML part's button and its printed link.
fn link_whole_in_both_parts(text: &str, html: &str, link: &str) {
    assert!(
        text.lines().any(|l| l.trim() == link),
        "the text part's link is not whole on a line: {text}"
    );
    assert!(
        html.matches(&format!("href=\"{link}\"")).count() >= 2,
        "the button and the printed link: {html}"
    );
    assert!(html.contains(&format!(">{link}</a>")), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_invitation_greets_names_the_organisation_and_carries_the_link_whole() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, with_org()).await;
    let _daemon = setup.daemon();
    let csv = setup.dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name,external_ref\nann@example.com,Ann Example,MTR-1\nbob@example.com,,MTR-2\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mails = smtp.wait_for(2, Duration::from_secs(120));
    assert_eq!(mails.len(), 2, "{}", setup.log());
    for path in &mails {
        let mail = read_mail(path);
        let (text, html) = parts(path);
        assert_eq!(mail.text_link, mail.qr_link, "the QR code is the same link");
        link_whole_in_both_parts(&text, &html, &mail.text_link);
        says_what_a_member_needs(&text, &html, "24 hours");
        match mail.to.as_str() {
            "ann@example.com" => {
                assert!(text.starts_with("Hello Ann Example,"), "{text}");
                assert!(html.contains("<p>Hello Ann Example,</p>"), "{html}");
            }
            "bob@example.com" => {
                assert_eq!(text.lines().next(), Some("Hello,"), "{text}");
                assert!(html.contains("<p>Hello,</p>"), "{html}");
            }
            other => panic!("mail to {other}"),
        }
        // The unsubscribe page it links names the organisation, for a phone.
        let list = header(path, "List-Unsubscribe");
        let url = list.trim_start_matches('<').split('>').next().unwrap();
        assert!(html.contains(url), "the HTML part links {url}");
        let page = reqwest::get(url).await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        for want in [
            "Northwind Power",
            "name=\"viewport\"",
            "<form method=\"post\">",
            "mailto:help@northwind.example",
        ] {
            assert!(page.contains(want), "{want}: {page}");
        }
    }
    setup.keep_for_log_scan().await;
}

/// Run the binary with `args` against `config`.
fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// A small PNG logo.
fn logo_png(path: &Path) {
    let img = image::RgbImage::from_pixel(120, 40, image::Rgb([11, 79, 138]));
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

/// DKIM with the RSA fixture key (`tests/fixtures/dkim`).
fn with_dkim(setup: &Setup) -> PathBuf {
    let fixtures = repo_root().join("tests/fixtures/dkim");
    std::fs::copy(
        fixtures.join("rsa2048-pkcs1.pem"),
        setup.dir.path().join("dkim.key"),
    )
    .unwrap();
    setup.edit_config(
        "from = \"Example Energy <connect@example.com>\"\n",
        "from = \"Example Energy <connect@example.com>\"\ndkim_domain = \"example.com\"\n\
         dkim_selector = \"mc2026\"\ndkim_key_file = \"dkim.key\"\n",
    );
    fixtures.join("rsa2048.txt")
}

fn dkim_verifies(msg: &Path, txt: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("crates/test-support/dkim_verify.py"))
        .arg(msg)
        .arg(txt)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_writes_the_exact_mail_with_the_placeholder_link_for_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        extra_config: format!("{ORG}logo_file = \"logo.png\"\n"),
        invitations: "concurrency = 16\nlink_ttl = \"90m\"\n".into(),
        ..Default::default()
    };
    let setup = setup(free_port(), dir, opts).await;
    logo_png(&setup.dir.path().join("logo.png"));
    let txt = with_dkim(&setup);
    let out_dir = setup.dir.path().join("preview");
    let o = setup.cli(&["mail", "preview", "--out", out_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("preview.eml") && said.contains("signed"),
        "{said}"
    );
    let eml = out_dir.join("preview.eml");
    let mail = read_mail(&eml);
    assert_eq!(mail.text_link, PLACEHOLDER);
    assert_eq!(
        mail.qr_link, PLACEHOLDER,
        "the QR code is of the placeholder"
    );
    assert_eq!(mail.to, "sam.sample@example.com", "the sample invitee");
    assert!(mail.has_date && !mail.message_id.is_empty());
    let (text, html) = parts(&eml);
    link_whole_in_both_parts(&text, &html, PLACEHOLDER);
    says_what_a_member_needs(&text, &html, "1 hour and 30 minutes");
    assert!(text.starts_with("Hello Sam Sample,"), "{text}");
    assert!(!header(&eml, "List-Unsubscribe").is_empty());
    let (ok, why) = dkim_verifies(&eml, &txt);
    assert!(ok, "the preview is signed as the daemon signs: {why}");
    // The logo inline, after the QR code, shown by the HTML part.
    let raw = std::fs::read(&eml).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let images: Vec<String> = msg
        .attachments()
        .map(|a| a.content_id().unwrap_or_default().to_string())
        .collect();
    assert_eq!(images.len(), 2, "QR code and logo: {images:?}");
    assert!(images[1].starts_with("logo-"), "{images:?}");
    assert!(html.contains(&format!("cid:{}", images[1])), "{html}");
    assert!(html.contains("alt=\"Northwind Power\""), "{html}");
    // preview.html: the HTML part with its images as data: URLs.
    let page = std::fs::read_to_string(out_dir.join("preview.html")).unwrap();
    assert!(!page.contains("cid:"), "no cid: left for a browser");
    assert_eq!(page.matches("src=\"data:image/png;base64,").count(), 2);

    // Each kind, for a row without a name and with an extra column.
    let row = "email=bob@example.com,external_ref=MTR-9,tariff=green";
    for (kind, wants) in [
        (
            "update",
            vec!["updated the agreement", "Accept it with your Private Key"],
        ),
        ("reminder", vec!["A reminder:", "This is reminder 1 of 2"]),
        ("identify", vec!["so that we know your MydexID"]),
        ("connect", vec!["invites you to connect", "MTR-9"]),
    ] {
        let out_dir = setup.dir.path().join(kind);
        let o = setup.cli(&[
            "mail",
            "preview",
            "--kind",
            kind,
            "--row",
            row,
            "--campaign",
            "meters",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let eml = out_dir.join("preview.eml");
        let (text, html) = parts(&eml);
        assert_eq!(text.lines().next(), Some("Hello,"), "{kind}: {text}");
        for want in wants {
            assert!(
                text.contains(want) && html.contains(want),
                "{kind}: {want}: {text}"
            );
        }
        assert!(text.contains("1 hour and 30 minutes"), "{kind}: {text}");
        assert_eq!(read_mail(&eml).to, "bob@example.com");
        link_whole_in_both_parts(&text, &html, PLACEHOLDER);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_test_arrives_with_test_in_its_subject_and_its_dkim_signature_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, with_org()).await;
    let txt = with_dkim(&setup);
    // No daemon runs: the command sends through [smtp] itself.
    let o = setup.cli(&[
        "mail",
        "test",
        "--to",
        "operator@example.org",
        "--row",
        "email=ann@example.com,name=\"Example, Ann\"",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mails = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(mails.len(), 1);
    let mail = read_mail(&mails[0]);
    assert_eq!(mail.to, "operator@example.org");
    assert!(mail.subject.starts_with("[test] "), "{}", mail.subject);
    assert_eq!(mail.text_link, PLACEHOLDER);
    let (text, html) = parts(&mails[0]);
    assert!(text.starts_with("Hello Example, Ann,"), "{text}");
    says_what_a_member_needs(&text, &html, "24 hours");
    let (ok, why) = dkim_verifies(&mails[0], &txt);
    assert!(ok, "{why}");

    // No SMTP server there: a clear error, exit 1.
    setup.edit_config(
        &format!("url = \"smtp://127.0.0.1:{}\"", smtp.port),
        &format!("url = \"smtp://127.0.0.1:{}\"", free_port()),
    );
    let o = setup.cli(&["mail", "test", "--to", "operator@example.org"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("was not sent"), "{}", stderr(&o));
}

/// A copy of `setup`'s config with `edit` applied, beside it.
fn variant(setup: &Setup, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let path = setup.dir.path().join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_and_hostile_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(free_port(), dir, Options::default()).await;
    let out = setup.dir.path().join("out");
    let out = out.to_str().unwrap();

    // Without [organisation]: it works, names smtp.from's name, and says so.
    let o = setup.cli(&["check-config"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("[organisation] is missing"),
        "{}",
        stderr(&o)
    );
    let o = setup.cli(&["mail", "preview", "--out", out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (text, _) = parts(&setup.dir.path().join("out/preview.eml"));
    assert!(text.contains("Example Energy invites you"), "{text}");

    // Usage mistakes: exit 2, naming what was wrong.
    for (args, want) in [
        (
            vec!["mail", "preview", "--campaign", "nope"],
            "no campaign \"nope\"",
        ),
        (
            vec!["mail", "preview", "--row", "name=Ann"],
            "column `email`",
        ),
        (
            vec!["mail", "preview", "--row", "email=not-an-address"],
            "not-an-address",
        ),
        (
            vec!["mail", "preview", "--row", "email"],
            "is not key=value",
        ),
        (
            vec!["mail", "preview", "--row", "email=a@example.com,bad col=1"],
            "bad col",
        ),
        (
            vec!["mail", "preview", "--row", "email=\"a@example.com"],
            "not closed",
        ),
        (
            vec![
                "mail",
                "preview",
                "--row",
                "email=a@example.com,campaign=other",
            ],
            "no campaign \"other\"",
        ),
        (vec!["mail", "preview", "--kind", "sideways"], "sideways"),
        (vec!["mail", "test", "--to", "not an address"], "--to"),
        (vec!["mail", "test", "--to", "a@b@example.com"], "--to"),
        (vec!["mail", "test"], "--to"),
    ] {
        let mut args = args.clone();
        args.extend(["--out", out]);
        let o = setup.cli(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    assert!(stderr(&setup.cli(&["mail", "preview", "--campaign", "nope"])).contains("\"meters\""));

    // Configuration mistakes: exit 78, naming the key.
    std::fs::create_dir_all(setup.dir.path().join("a-directory.png")).unwrap();
    std::fs::write(setup.dir.path().join("notes.png"), "not an image at all").unwrap();
    let mut big = std::fs::read(repo_root().join("crates/qr/Cargo.toml")).unwrap();
    big.splice(0..0, *b"\x89PNG\r\n\x1a\n");
    big.resize(200 * 1024, 0);
    std::fs::write(setup.dir.path().join("big.png"), big).unwrap();
    let org = |extra: &str| format!("{ORG}{extra}");
    for (name, section, want) in [
        (
            "missing",
            org("logo_file = \"nowhere.png\"\n"),
            "cannot read",
        ),
        (
            "directory",
            org("logo_file = \"a-directory.png\"\n"),
            "not a regular file",
        ),
        (
            "not-image",
            org("logo_file = \"notes.png\"\n"),
            "not a PNG, JPEG or GIF",
        ),
        (
            "too-big",
            org("logo_file = \"big.png\"\n"),
            "at most 102400 bytes",
        ),
        (
            "no-contact",
            "[organisation]\nname = \"Northwind Power\"\n".to_string(),
            "organisation.contact",
        ),
        (
            "two-lines",
            "[organisation]\nname = \"North\\nwind\"\ncontact = \"x\"\n".to_string(),
            "organisation.name",
        ),
        (
            "bad-website",
            "[organisation]\nname = \"N\"\ncontact = \"x\"\nwebsite = \"ftp://x.example\"\n"
                .to_string(),
            "organisation.website",
        ),
        (
            "misspelt",
            "[organisation]\nname = \"N\"\ncontact = \"x\"\nwebsight = \"https://x.example\"\n"
                .to_string(),
            "websight",
        ),
    ] {
        let config = variant(&setup, &format!("{name}.toml"), |t| format!("{t}{section}"));
        for args in [vec!["check-config"], vec!["mail", "preview", "--out", out]] {
            let o = run(&config, &args);
            assert_eq!(o.status.code(), Some(78), "{name} {args:?}: {}", stderr(&o));
            let e = stderr(&o);
            assert!(e.contains(want), "{name} {args:?}: {e}");
            if section.contains("logo_file") {
                assert!(e.contains("organisation.logo_file"), "{name}: {e}");
            }
        }
    }
    // A link Mydex keeps 24 hours cannot be promised for three days.
    let config = variant(&setup, "ttl.toml", |t| {
        t.replace("[invitations]\n", "[invitations]\nlink_ttl = \"3d\"\n")
    });
    let o = run(&config, &["mail", "preview", "--out", out]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invitations.link_ttl"),
        "{}",
        stderr(&o)
    );
}
