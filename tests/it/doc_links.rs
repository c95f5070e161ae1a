//! Every relative link of the Markdown documents resolves.
//!
//! The documents are README.md, ARCHITECTURE.md, CONTRIBUTING.md, CHANGELOG.md
//! and every `.md` file under docs/. For each link `[text](target)` outside
//! code whose target is not a URL (http, https, mailto), the file or folder it
//! names must exist relative to the linking file, and a `#anchor` (alone, or
//! after a path to a Markdown file) must be the GitHub-style anchor of one of
//! that file's headings. The test fails listing every broken link.
//!
//! Only std: links, code spans, fences and headings are found by a small
//! scanner that knows the Markdown these documents use, not all of CommonMark.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The documents at the repository root; docs/ is searched as well.
const ROOT_DOCUMENTS: [&str; 4] = [
    "README.md",
    "ARCHITECTURE.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The anchor GitHub gives a heading: lowercase, each space a '-', and every
/// character that is not a letter, a digit, '-' or '_' left out.
fn anchor(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.trim().chars().flat_map(char::to_lowercase) {
        if c == ' ' {
            out.push('-');
        } else if c.is_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        }
    }
    out
}

/// An opening code fence: its character (` or ~) and how many of them.
#[derive(Clone, Copy)]
struct Fence {
    ch: char,
    len: usize,
}

/// The fence a line opens or closes, if it is a fence line (up to three
/// spaces of indent, then three or more backticks or tildes).
fn fence_of(line: &str) -> Option<Fence> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = rest.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = rest.chars().take_while(|&c| c == ch).count();
    (len >= 3).then_some(Fence { ch, len })
}

/// The paragraphs outside code fences, each with the number of its first line:
/// runs of non-blank lines, joined with '\n'. A fence ends a paragraph.
fn prose_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<Fence> = None;
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let fence = fence_of(line);
        if let Some(opening) = open {
            let closes = fence.is_some_and(|f| {
                f.ch == opening.ch
                    && f.len >= opening.len
                    && line.trim().chars().all(|c| c == opening.ch)
            });
            if closes {
                open = None;
            }
            continue;
        }
        if fence.is_some() || line.trim().is_empty() {
            blocks.extend(current.take());
            open = fence;
            continue;
        }
        match &mut current {
            Some((_, text)) => {
                text.push('\n');
                text.push_str(line);
            }
            None => current = Some((number, line.to_string())),
        }
    }
    blocks.extend(current);
    blocks
}

/// The text with every inline code span blanked out (each character but '\n'
/// turned into a space, so positions and line breaks stay where they were).
/// A backslash outside code escapes the next character; a run of backticks
/// that no equal run closes is literal text.
fn without_code_spans(text: &str) -> Vec<char> {
    let mut chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|&&c| c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(start_of_close) => {
                let end = start_of_close + run;
                for c in &mut chars[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    chars
}

/// The position just after the bracket that closes the one at `open`
/// (`[`…`]` or `(`…`)`, nested pairs allowed, backslash escapes skipped).
fn after_closing(chars: &[char], open: usize, left: char, right: char) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if c == left {
            depth += 1;
        } else if c == right {
            depth -= 1;
            if depth == 0 {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

/// The destination of a link as written between its parentheses: inside
/// `<…>` if so written, else up to the first whitespace (a title may follow).
fn destination(inside: &str) -> String {
    let inside = inside.trim();
    if let Some(rest) = inside.strip_prefix('<') {
        return rest.split('>').next().unwrap_or_default().to_string();
    }
    inside
        .split(char::is_whitespace)
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every inline link (and image) `[text](target)` of a Markdown file outside
/// code, as (line number, target).
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (first_line, block) in prose_blocks(markdown) {
        let chars = without_code_spans(&block);
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 2,
                '[' => {
                    let text_end = after_closing(&chars, i, '[', ']');
                    let target_end = text_end
                        .filter(|&end| chars.get(end) == Some(&'('))
                        .and_then(|end| after_closing(&chars, end, '(', ')').map(|t| (end, t)));
                    if let Some((open, close)) = target_end {
                        let inside: String = chars[open + 1..close - 1].iter().collect();
                        let line = first_line + chars[..i].iter().filter(|&&c| c == '\n').count();
                        out.push((line, destination(&inside)));
                    }
                    // Go on inside the text: an image can sit in a link's text.
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
    out
}

/// The text of a heading line (`#` to `######`, up to three spaces of
/// indent), without the closing `#`s.
fn atx_heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let text = &rest[level..];
    if !text.is_empty() && !text.starts_with([' ', '\t']) {
        return None;
    }
    let text = text.trim();
    let without_closing = text.trim_end_matches('#');
    if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        Some(without_closing.trim_end())
    } else {
        Some(text)
    }
}

/// Whether a line underlines the line before it as a heading (`===` or `---`).
fn setext_underline(line: &str) -> bool {
    let t = line.trim();
    (!t.is_empty() && t.chars().all(|c| c == '=')) || (t.len() >= 3 && t.chars().all(|c| c == '-'))
}

/// Whether a line can be the text of a setext heading: not a heading, list
/// item, quote or table row itself.
fn plain_text_line(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty()
        && atx_heading(line).is_none()
        && !t.starts_with(['-', '*', '+', '>', '|'])
        && !t.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// A heading's text as GitHub renders it before making the anchor: a link
/// inside it counts by its text only.
fn rendered(heading: &str) -> String {
    let chars: Vec<char> = heading.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let text_end = after_closing(&chars, i, '[', ']');
            let link_end = text_end
                .filter(|&end| chars.get(end) == Some(&'('))
                .and_then(|end| after_closing(&chars, end, '(', ')'));
            if let (Some(text_end), Some(link_end)) = (text_end, link_end) {
                out.extend(&chars[i + 1..text_end - 1]);
                i = link_end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The anchors of a Markdown file's headings, in order; a repeated one gets
/// `-1`, `-2`, … appended, as on GitHub.
fn anchors(markdown: &str) -> Vec<String> {
    let mut headings = Vec::new();
    for (_, block) in prose_blocks(markdown) {
        let lines: Vec<&str> = block.lines().collect();
        for (k, line) in lines.iter().enumerate() {
            if let Some(text) = atx_heading(line) {
                headings.push(text.to_string());
            } else if k > 0 && setext_underline(line) && plain_text_line(lines[k - 1]) {
                headings.push(lines[k - 1].trim().to_string());
            }
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for heading in headings {
        let base = anchor(&rendered(&heading));
        let count = seen.entry(base.clone()).or_insert(0);
        out.push(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    out
}

/// `%XX` escapes decoded (a path or anchor as written in a link).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an anchor is GitHub's line anchor of a source file (`L12`, `L12-L20`).
fn line_anchor(fragment: &str) -> bool {
    fragment.split('-').all(|part| {
        part.strip_prefix('L')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    })
}

fn is_markdown(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// Checks the links of Markdown files below one root, reading each linked
/// Markdown file's headings once.
struct Checker {
    root: PathBuf,
    anchors: HashMap<PathBuf, Vec<String>>,
}

impl Checker {
    fn new(root: &Path) -> Self {
        Checker {
            root: root.to_path_buf(),
            anchors: HashMap::new(),
        }
    }

    fn shown<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }

    fn anchors_of(&mut self, path: &Path) -> &[String] {
        self.anchors.entry(path.to_path_buf()).or_insert_with(|| {
            fs::read_to_string(path)
                .map(|t| anchors(&t))
                .unwrap_or_default()
        })
    }

    /// One line per broken link of `file`: where it is, the target, and why.
    fn check_file(&mut self, file: &Path) -> Vec<String> {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => return vec![format!("{}: cannot be read: {e}", self.shown(file))],
        };
        let dir = file.parent().unwrap_or(&self.root).to_path_buf();
        let mut problems = Vec::new();
        for (line, target) in links(&text) {
            let lower = target.to_ascii_lowercase();
            if ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| lower.starts_with(scheme))
            {
                continue;
            }
            let (path_part, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(percent_decoded(f))),
                None => (target.as_str(), None),
            };
            let where_ = format!("{}:{line}: ({target})", self.shown(file));
            let linked = if path_part.is_empty() {
                file.to_path_buf()
            } else {
                let path = percent_decoded(path_part);
                match path.strip_prefix('/') {
                    Some(from_root) => self.root.join(from_root),
                    None => dir.join(path),
                }
            };
            if path_part.is_empty() && fragment.is_none() {
                problems.push(format!("{where_} links to nothing"));
                continue;
            }
            if !linked.exists() {
                problems.push(format!("{where_} names a file that does not exist"));
                continue;
            }
            let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
                continue;
            };
            if !is_markdown(&linked) {
                let source_line = linked.is_file() && line_anchor(&fragment);
                if !source_line {
                    problems.push(format!(
                        "{where_} has an anchor, but its file is not Markdown"
                    ));
                }
                continue;
            }
            if !self.anchors_of(&linked).contains(&fragment) {
                let known = self.anchors_of(&linked).join(", ");
                problems.push(format!(
                    "{where_}: no heading makes the anchor #{fragment} (it has: {known})"
                ));
            }
        }
        problems
    }
}

/// Every `.md` file below `dir`, in a stable order.
fn markdown_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            markdown_under(&path, out);
        } else if is_markdown(&path) {
            out.push(path);
        }
    }
}

#[test]
fn every_relative_link_and_anchor_in_the_documents_resolves() {
    let root = repo_root();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for name in ROOT_DOCUMENTS {
        let path = root.join(name);
        if path.is_file() {
            files.push(path);
        } else {
            problems.push(format!("{name}: missing"));
        }
    }
    let before_docs = files.len();
    markdown_under(&root.join("docs"), &mut files);
    assert!(
        files.len() > before_docs,
        "no Markdown files found under {}",
        root.join("docs").display()
    );
    let mut checker = Checker::new(&root);
    for file in &files {
        problems.extend(checker.check_file(file));
    }
    assert!(
        problems.is_empty(),
        "{} broken link(s) in the Markdown documents:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn anchors_are_made_as_on_github() {
    for (heading, expected) in [
        ("Exit codes", "exit-codes"),
        ("Scale (measured 2026-11-30)", "scale-measured-2026-11-30"),
        (
            "GPU: ResNet-50 against the PyTorch script (not run yet)",
            "gpu-resnet-50-against-the-pytorch-script-not-run-yet",
        ),
        ("Shared filesystem, checked", "shared-filesystem-checked"),
        (
            "`sweep run` and `sweep_worker`",
            "sweep-run-and-sweep_worker",
        ),
        ("  Trimmed  ", "trimmed"),
    ] {
        assert_eq!(anchor(heading), expected, "heading {heading:?}");
    }
    assert_eq!(
        anchor(&rendered("See [the CLI](docs/cli.md#gpus) first")),
        "see-the-cli-first"
    );
}

#[test]
fn headings_in_code_are_not_headings_and_repeats_are_numbered() {
    let markdown = "# Intro\n\n```sh\n# a comment, not a heading\n```\n\n## Intro ##\n\n\
                    Setext title\n============\n\n#not-a-heading\n\n### `make test`\n";
    assert_eq!(
        anchors(markdown),
        ["intro", "intro-1", "setext-title", "make-test"]
    );
}

#[test]
fn links_in_code_are_not_links() {
    let markdown = "See [a](x.md#y) and `[b](not-a-link)`, an image ![c](img.png),\n\
                    a link [split\nacross lines](z.md) and [d](<w v.md> \"title\").\n\n\
                    ```\n[e](in-a-fence.md)\n```\n\n\\[f](escaped.md) ``[g](two-ticks.md)``\n";
    let found = links(markdown);
    let expected: [(usize, &str); 4] = [(1, "x.md#y"), (1, "img.png"), (2, "z.md"), (3, "w v.md")];
    assert_eq!(
        found,
        expected.map(|(line, target)| (line, target.to_string()))
    );
}

#[test]
fn a_broken_link_or_anchor_is_reported() {
    let dir = std::env::temp_dir().join(format!("sweep-doc-links-{}", std::process::id()));
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(
        dir.join("a.md"),
        "# Title\n\n[ok](sub/b.md#a-section) [self](#title) [folder](sub/) \
         [gone](missing.md)\n[bad anchor](sub/b.md#nowhere) [web](https://example.com/x) \
         [code](src.rs#L3)\n",
    )
    .unwrap();
    fs::write(
        dir.join("sub/b.md"),
        "## A section\n\n[up](../a.md#title)\n",
    )
    .unwrap();
    fs::write(dir.join("src.rs"), "fn main() {}\n").unwrap();

    let mut checker = Checker::new(&dir);
    let problems_a = checker.check_file(&dir.join("a.md"));
    let problems_b = checker.check_file(&dir.join("sub/b.md"));
    fs::remove_dir_all(&dir).unwrap();

    assert_eq!(problems_a.len(), 2, "{problems_a:#?}");
    assert!(
        problems_a[0].starts_with("a.md:3: (missing.md)"),
        "{problems_a:#?}"
    );
    assert!(
        problems_a[1].starts_with("a.md:4: (sub/b.md#nowhere)"),
        "{problems_a:#?}"
    );
    assert!(problems_b.is_empty(), "{problems_b:#?}");
}
