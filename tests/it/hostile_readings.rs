//! Hostile readings files. Generated (proptest): the readings
//! row parser fed any bytes, and files mixing good rows with hostile lines
//! (invalid UTF-8, NUL and control characters, lines and values over the
//! limits, missing `external_id` or member, garbage, a key given twice, a
//! byte order mark, CRLF): never a panic, every bad row reported with its
//! line and reason, every good row kept as written. Then through the real
//! binary: `deliver` of an empty file, a file with only a header, a binary
//! file and oversized ones is a clear error, exit 1, and nothing is placed
//! in `delivery.dir`.
//!
//! Cases per property: `PROPTEST_CASES` (default 256; `.ci/run` uses more).
//! A failing case is saved in `tests/proptest-regressions/hostile_readings.txt`.

use std::collections::BTreeMap;

use mydex_connector::domain::{MemberRef, Reading, ReadingError};
use mydex_connector::intake::Format;
use mydex_connector::intake::readings::{ReadingRows, RowRejected};
use mydex_test_support::*;
use proptest::prelude::*;

/// The row parser's line limit (`intake/row_error.rs`).
const MAX_LINE: usize = 64 * 1024;
/// The longest field value (`domain/reading.rs`).
const MAX_VALUE: usize = 4096;
const HEADER: &str = "mydexid,external_id,kwh";

/// One line of a generated file and what the parser must make of it.
#[derive(Debug, Clone)]
enum Line {
    /// A valid reading whose `kwh` is this (NUL, controls, quotes...).
    Good(String),
    Blank,
    NoExternalId,
    NoMember,
    ControlInId(char),
    NotUtf8,
    TooLong,
    ValueTooLong,
    /// Neither a CSV row of three fields nor JSON.
    Garbage(String),
    /// A key given twice (JSON Lines); a fourth field (CSV).
    Repeated,
}

/// Field values rich in what breaks parsers; never blank, never a line break.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "v([a-z0-9 .,;:]|\"|'|\\x00|\\x01|\\x1b|\\x7f|\\t|\u{85}|\u{feff}|é|💥|\\\\|\\{|\\}|<script>){0,60}",
    )
    .expect("a valid regex")
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => value().prop_map(Line::Good),
        1 => Just(Line::Blank),
        1 => Just(Line::NoExternalId),
        1 => Just(Line::NoMember),
        1 => prop_oneof![
            (0u32..0x20).prop_filter_map("a line break", |c| {
                char::from_u32(c).filter(|c| *c != '\n' && *c != '\r')
            }),
            Just('\u{7f}'),
            Just('\u{85}'),
        ]
        .prop_map(Line::ControlInId),
        1 => Just(Line::NotUtf8),
        1 => Just(Line::TooLong),
        1 => Just(Line::ValueTooLong),
        1 => proptest::string::string_regex("[a-z0-9 #=<>{}\\[\\]é💥\\x00]{0,40}")
            .expect("a valid regex")
            .prop_map(Line::Garbage),
        1 => Just(Line::Repeated),
    ]
}

/// A CSV field, quoted.
fn q(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

/// The bytes of line `i` in `format`.
fn render(line: &Line, i: usize, format: Format) -> Vec<u8> {
    let (m, e) = (format!("m{i}"), format!("e{i}"));
    let csv = format == Format::Csv;
    let json = |v: serde_json::Value| v.to_string();
    let text = match line {
        Line::Good(v) if csv => format!("{m},{e},{}", q(v)),
        Line::Good(v) => json(serde_json::json!({"mydexid": m, "external_id": e, "kwh": v})),
        Line::Blank => String::new(),
        Line::NoExternalId if csv => format!("{m},,5"),
        Line::NoExternalId => json(serde_json::json!({"mydexid": m, "kwh": 5})),
        Line::NoMember if csv => format!(",{e},5"),
        Line::NoMember => json(serde_json::json!({"external_id": e, "kwh": 5})),
        Line::ControlInId(c) if csv => format!("{m},{},5", q(&format!("e{c}x"))),
        Line::ControlInId(c) => {
            json(serde_json::json!({"mydexid": m, "external_id": format!("e{c}x")}))
        }
        Line::NotUtf8 => {
            let mut b = if csv {
                format!("{m},e").into_bytes()
            } else {
                format!("{{\"mydexid\":\"{m}\",\"external_id\":\"e").into_bytes()
            };
            b.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            b.extend_from_slice(if csv { b",5" } else { b"\"}" });
            return b;
        }
        Line::TooLong if csv => format!("{m},{e},{}", "x".repeat(MAX_LINE + 10)),
        Line::TooLong => json(
            serde_json::json!({"mydexid": m, "external_id": e, "kwh": "x".repeat(MAX_LINE + 10)}),
        ),
        Line::ValueTooLong if csv => format!("{m},{e},{}", "y".repeat(MAX_VALUE + 1)),
        Line::ValueTooLong => json(
            serde_json::json!({"mydexid": m, "external_id": e, "kwh": "y".repeat(MAX_VALUE + 1)}),
        ),
        Line::Garbage(s) if csv => format!("#{s}"),
        Line::Garbage(s) => format!("{{{s}"),
        Line::Repeated if csv => format!("{m},{e},5,6"),
        Line::Repeated => format!(r#"{{"mydexid":"{m}","external_id":"{e}","external_id":"x"}}"#),
    };
    text.into_bytes()
}

/// Whether `got` is what the parser must say of `line`.
fn as_expected(line: &Line, i: usize, format: Format, got: &Result<Reading, RowRejected>) -> bool {
    use ReadingError as E;
    use RowRejected as R;
    let csv = format == Format::Csv;
    match (line, got) {
        (Line::Good(v), Ok(r)) => {
            *r == Reading {
                member: MemberRef::MydexId(format!("m{i}")),
                dataset: None,
                external_id: format!("e{i}"),
                fields: BTreeMap::from([("kwh".to_string(), v.clone())]),
            }
        }
        (Line::NoExternalId, Err(R::Reading(E::NoExternalId)))
        | (Line::NoMember, Err(R::Reading(E::NoMember)))
        | (Line::ControlInId(_), Err(R::Reading(E::BadExternalId)))
        | (Line::NotUtf8, Err(R::NotUtf8))
        | (Line::TooLong, Err(R::TooLong))
        | (Line::ValueTooLong, Err(R::Reading(E::ValueTooLong(_)))) => true,
        (Line::Garbage(_), Err(R::FieldCount { fields: 1, .. })) => csv,
        (Line::Garbage(_), Err(R::NotJson(_) | R::Reading(E::NoMember))) => !csv,
        (Line::Repeated, Err(R::FieldCount { fields: 4, .. })) => csv,
        (Line::Repeated, Err(R::NotJson(why))) => !csv && why.contains("is repeated"),
        _ => false,
    }
}

/// A reading the parser accepted holds only what the rules allow.
fn valid(r: &Reading) -> bool {
    let member = match &r.member {
        MemberRef::ExternalRef(v) | MemberRef::MydexId(v) | MemberRef::ConnectionId(v) => v,
    };
    let name_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !["id", "ds_id", "uid", "con_id", "key"].contains(&k)
    };
    !member.is_empty()
        && !member.chars().any(char::is_control)
        && !r.external_id.is_empty()
        && r.external_id.chars().count() <= 128
        && !r.external_id.chars().any(char::is_control)
        && r.fields.len() <= 100
        && r.fields
            .iter()
            .all(|(k, v)| name_ok(k) && v.chars().count() <= MAX_VALUE)
}

fn regressions_file() -> &'static str {
    let path = repo_root().join("tests/proptest-regressions/hostile_readings.txt");
    Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
}

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

fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(format!("{HEADER}\n").into_bytes()),
        Just(format!("\u{feff}{HEADER}\r\n").into_bytes()),
        Just(b"mydexid,external_id,MydexID\n".to_vec()),
        Just(b"mydexid,,kwh\n".to_vec()),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn readings_files_of_any_bytes_are_read_row_by_row(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        csv in any::<bool>(),
        header in header(),
    ) {
        let mut input = if csv { header } else { Vec::new() };
        input.extend(body);
        let format = if csv { Format::Csv } else { Format::JsonLines };
        match ReadingRows::new(&input[..], format) {
            Err(e) => prop_assert!(matches!(e, RowRejected::BadHeader(_)), "{e}"),
            Ok(rows) => {
                let mut last = 0;
                for row in rows.take(10_000) {
                    let (line, result) = row.expect("reading from memory");
                    prop_assert!(line > last, "line numbers go up");
                    last = line;
                    match result {
                        Ok(r) => prop_assert!(valid(&r), "{r:?}"),
                        Err(e) => prop_assert!(!e.to_string().is_empty()),
                    }
                }
            }
        }
    }

    #[test]
    fn good_rows_are_kept_and_each_bad_one_reported_at_its_line(
        lines in prop::collection::vec(line(), 0..24),
        csv in any::<bool>(),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let format = if csv { Format::Csv } else { Format::JsonLines };
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut input = Vec::new();
        if bom {
            input.extend_from_slice("\u{feff}".as_bytes());
        }
        if csv {
            input.extend_from_slice(HEADER.as_bytes());
            input.extend_from_slice(eol);
        }
        for (i, l) in lines.iter().enumerate() {
            input.extend(render(l, i, format));
            input.extend_from_slice(eol);
        }
        let first = if csv { 2 } else { 1 };
        let rows: Vec<(u64, Result<Reading, RowRejected>)> = ReadingRows::new(&input[..], format)
            .expect("a good header")
            .map(|r| r.expect("reading from memory"))
            .collect();
        let mut got = rows.iter();
        for (i, l) in lines.iter().enumerate() {
            let line = (first + i) as u64;
            if matches!(l, Line::Blank) {
                continue;
            }
            let Some((n, result)) = got.next() else {
                return Err(TestCaseError::fail(format!("line {line} ({l:?}) not reported")));
            };
            prop_assert_eq!(*n, line, "{:?}", l);
            prop_assert!(as_expected(l, i, format, result), "line {}: {:?} gave {:?}", line, l, result);
            if let Err(e) = result {
                prop_assert!(!e.to_string().is_empty());
            }
        }
        prop_assert!(got.next().is_none(), "no more rows than lines");
    }
}

/// Files in `dir` other than its `done/` and `rejected/` directories.
fn placed(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "done" && n != "rejected")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_refuses_hostile_files_and_places_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: "\n[delivery]\ndir = \"readings\"\n".into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let mut binary: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x89, b'P', b'N', b'G', b'\n'];
    binary.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let huge_line = format!(
        "{{\"mydexid\":\"m1\",\"external_id\":\"e1\",\"kwh\":\"{}\"}}\n",
        "9".repeat(MAX_LINE * 2)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty.csv",
            Vec::new(),
            "the CSV header is empty or malformed: the file is empty",
        ),
        (
            "empty.jsonl",
            Vec::new(),
            "holds no readings (the file is empty or has only a header)",
        ),
        (
            "blank.jsonl",
            b"\xef\xbb\xbf\n\r\n  \n".to_vec(),
            "holds no readings",
        ),
        (
            "header.csv",
            format!("{HEADER}\n").into_bytes(),
            "holds no readings",
        ),
        (
            "binary.csv",
            binary.clone(),
            "the CSV header is empty or malformed: not UTF-8",
        ),
        (
            "binary.jsonl",
            binary,
            "binary.jsonl:1: line is not valid UTF-8",
        ),
        (
            "huge.jsonl",
            huge_line.into_bytes(),
            "huge.jsonl:1: line is longer than 65536 bytes",
        ),
        (
            "huge-header.csv",
            format!("{}\nm1,e1\n", "a".repeat(MAX_LINE * 2)).into_bytes(),
            "the CSV header is empty or malformed: longer than 65536 bytes",
        ),
        (
            "repeated.csv",
            b"mydexid,external_id,External_ID\nm1,e1,e2\n".to_vec(),
            "column \"external_id\" is empty or repeated",
        ),
        (
            "repeated.jsonl",
            br#"{"mydexid":"m1","external_id":"e1","external_id":"e2"}"#.to_vec(),
            "repeated.jsonl:1: not valid JSON: key \"external_id\" is repeated",
        ),
    ];
    for (name, bytes, says) in cases {
        let file = setup.dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = setup.cli(&["deliver", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        // No row placed: a file whose every row was refused is placed as
        // empty lines with its note (the daemon keeps the refused rows for
        // `rejects list`), and holds nothing else.
        let readings = setup.dir.path().join("readings");
        for p in placed(&readings) {
            let path = readings.join(&p);
            if !p.starts_with('.') {
                let text = std::fs::read(&path).unwrap();
                assert!(
                    text.iter().all(|b| b.is_ascii_whitespace()),
                    "{name}: no row placed, but {p} holds some"
                );
            } else {
                assert!(p.ends_with(".origin"), "{name}: {p} left behind");
            }
            std::fs::remove_file(path).unwrap();
        }
    }
    // Every line of a binary JSON Lines file is reported, with its number.
    let out = setup.cli(&[
        "deliver",
        setup.dir.path().join("binary.jsonl").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("binary.jsonl: 0 readings placed"), "{err}");
}
