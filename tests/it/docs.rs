//! The documentation holds together without building it: README.md stays the
//! front door (under 300 lines, opening with the demo and, right after the
//! words "Run the tests", the test command), every chapter the book's
//! SUMMARY.md names exists and opens with a title, no chapter is left out of
//! it, and every relative link of the README and the book leads to a file,
//! and to a heading of it when it names one (heading ids as mdBook makes
//! them). Markdown is read with pulldown-cmark, the parser mdBook uses.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mydex_test_support::repo_root;
use pulldown_cmark::{CodeBlockKind, Event, LinkType, Options, Parser, Tag, TagEnd};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
}

fn book_src() -> PathBuf {
    repo_root().join("docs/book/src")
}

/// A chapter's text with mdBook's `{{#include PATH}}` lines replaced by the
/// file they name (relative to the chapter), which must exist.
fn expanded(path: &Path) -> String {
    let text = read(path);
    let dir = path.parent().expect("a chapter's directory");
    text.lines()
        .map(|line| match line.trim().strip_prefix("{{#include ") {
            Some(rest) => {
                let target = rest.trim_end_matches("}}").trim();
                let included = dir.join(target);
                assert!(
                    included.is_file(),
                    "{}: {{{{#include {target}}}}}: no such file",
                    path.display()
                );
                read(&included)
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// mdBook's id for a heading's text: letters, digits, `_` and `-` kept
/// (lowercased), whitespace made `-`, anything else dropped.
fn heading_id(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The ids of a Markdown text's headings (a repeated one gets `-1`, `-2`, …).
fn heading_ids(markdown: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Heading { id: Some(id), .. }) => {
                ids.insert(id.to_string());
            }
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    let id = heading_id(&text);
                    let n = seen.entry(id.clone()).or_insert(0);
                    ids.insert(if *n == 0 {
                        id.clone()
                    } else {
                        format!("{id}-{n}")
                    });
                    *n += 1;
                }
            }
            _ => {}
        }
    }
    ids
}

/// The destinations of a Markdown text's links and images that point inside
/// the repository (no scheme, no autolink).
fn relative_links(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, options())
        .filter_map(|event| match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                ..
            })
            | Event::Start(Tag::Image {
                link_type,
                dest_url,
                ..
            }) if !matches!(link_type, LinkType::Autolink | LinkType::Email) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .filter(|dest| !dest.contains("://") && !dest.starts_with("mailto:"))
        .collect()
}

/// Every relative link of `file` (as it reads on disk) resolves; returns the
/// problems found.
fn broken_links(file: &Path) -> Vec<String> {
    let dir = file.parent().expect("a file's directory");
    let mut problems = Vec::new();
    for dest in relative_links(&read(file)) {
        let (path, anchor) = match dest.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (dest.as_str(), None),
        };
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !target.exists() {
            problems.push(format!("{}: {dest}: no such file", file.display()));
            continue;
        }
        let is_markdown = target.extension().is_some_and(|e| e == "md");
        if let Some(anchor) = anchor
            && is_markdown
            && !heading_ids(&expanded(&target)).contains(anchor)
        {
            problems.push(format!("{}: {dest}: no such heading", file.display()));
        }
    }
    problems
}

/// The fenced code blocks of a Markdown text, in order.
fn fenced_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_))) => current = Some(String::new()),
            Event::Text(t) => {
                if let Some(block) = current.as_mut() {
                    block.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

/// The chapter files SUMMARY.md links to, as written.
fn summary_chapters() -> Vec<String> {
    let summary = read(&book_src().join("SUMMARY.md"));
    let chapters = relative_links(&summary);
    assert!(chapters.len() >= 20, "SUMMARY.md names {chapters:?}");
    chapters
}

#[test]
fn the_readme_is_the_front_door() {
    let readme = read(&repo_root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines < 300,
        "README.md has {lines} lines: move the rest into the book"
    );

    let blocks = fenced_blocks(&readme);
    assert!(blocks.len() >= 2, "README.md's code blocks: {blocks:?}");
    let demo = blocks[0].trim();
    assert!(
        demo.starts_with("cargo run") && demo.ends_with("-- demo"),
        "README.md's first command is not the demo: {demo:?}"
    );
    assert_eq!(
        blocks[1].trim(),
        "scripts/test",
        "README.md's second command"
    );

    // The test command's block comes right after the words "Run the tests".
    let words = readme
        .find("Run the tests")
        .expect("README.md says \"Run the tests\"");
    let after = &readme[words + "Run the tests".len()..];
    let block = after
        .find("```")
        .expect("a code block after \"Run the tests\"");
    let between = after[..block].trim_matches(|c: char| c.is_whitespace() || "*:".contains(c));
    assert!(
        between.is_empty(),
        "between \"Run the tests\" and its block: {between:?}"
    );
    assert!(
        after[block..].starts_with("```sh\nscripts/test\n```"),
        "{}",
        &after[block..]
    );
}

#[test]
fn every_chapter_exists_opens_with_a_title_and_is_in_the_summary() {
    let src = book_src();
    let named: BTreeSet<String> = summary_chapters().into_iter().collect();
    for chapter in &named {
        let path = src.join(chapter);
        assert!(
            path.is_file(),
            "SUMMARY.md names {chapter}, which does not exist"
        );
        let text = expanded(&path);
        assert!(
            text.starts_with("# "),
            "{chapter} does not open with a `# Title`: {:?}",
            text.lines().next()
        );
    }
    let book_toml = read(&repo_root().join("docs/book/book.toml"));
    assert!(book_toml.contains("src = \"src\""), "{book_toml}");
    let entries = std::fs::read_dir(&src).expect("docs/book/src");
    for entry in entries {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(named.contains(name.as_ref()), "{name} is not in SUMMARY.md");
        }
    }
}

#[test]
fn every_relative_link_of_the_readme_and_the_book_resolves() {
    let root = repo_root();
    let mut files = vec![
        root.join("README.md"),
        root.join("docs/architecture.md"),
        root.join("docs/mydex-contract.md"),
        book_src().join("SUMMARY.md"),
    ];
    files.extend(summary_chapters().iter().map(|c| book_src().join(c)));
    let problems: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );

    // The checker itself: a made-up file and a made-up heading are caught.
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = dir.path().join("probe.md");
    std::fs::write(
        &probe,
        "# Probe\n\n## A `code` heading (here)\n\n[ok](#a-code-heading-here) \
         [no file](missing.md) [no heading](probe.md#nowhere) `[in code](x.md)`\n",
    )
    .expect("write the probe");
    let found = broken_links(&probe);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("missing.md: no such file"), "{found:?}");
    assert!(
        found[1].contains("probe.md#nowhere: no such heading"),
        "{found:?}"
    );
}
