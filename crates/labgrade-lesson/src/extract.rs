//! Reading a lesson written for people: its shell blocks, the section each sits in, and the
//! output the text documents for them, all with markdown line numbers.
//!
//! Documented output comes from three places: a code block introduced by a line such as
//! `输出：`, `Output:` or `出力例：` right after a shell block; `# 输出: TEXT` comments inside a
//! block (documenting the commands since the previous such comment); and the non-prompt lines
//! of a `console` block (documenting the `$ ` command above them).

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};

/// A lesson's runnable content, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lesson {
    /// Every shell block.
    pub blocks: Vec<ShellBlock>,
    /// Markdown lines of documented-output blocks that follow no shell block (reported, not run).
    pub orphan_outputs: Vec<usize>,
    /// Every link and image destination, in document order (a course's static checks resolve
    /// the relative ones).
    pub links: Vec<LinkRef>,
    /// Every heading, in document order (labs and assignments name their section by its text).
    pub headings: Vec<Heading>,
    /// Paragraphs that are one bold phrase (`**场景 3：...**`): lessons use them as minor
    /// headings, and labs may name one as their section. Level 0.
    pub labels: Vec<Heading>,
}

/// A link or image in the markdown, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    /// Markdown line the link starts on (1-based).
    pub line: usize,
    /// The destination exactly as written (reference links already resolved by the parser).
    pub dest: String,
    /// An image (`![..](..)`), not a link.
    pub image: bool,
}

/// A heading of the markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// Markdown line of the heading (1-based).
    pub line: usize,
    /// 1 for `#` .. 6 for `######`.
    pub level: u8,
    /// Its text, trimmed (inline code included, markup dropped).
    pub text: String,
}

/// One fenced shell block of the lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellBlock {
    /// Markdown line of the opening fence (1-based).
    pub line: usize,
    /// The nearest heading above the block (empty before the first heading).
    pub section: String,
    /// Index of the top-level part (`#` / `##` heading) the block is in: blocks of one part run
    /// in one shell session, in order, as a student types them into one terminal.
    pub part: usize,
    /// The info string's first word (`bash`, `console`, ...; empty when unlabelled).
    pub language: String,
    /// The block's commands, split where documented output sits between them.
    pub segments: Vec<Segment>,
}

impl ShellBlock {
    /// The whole block's script, as the lesson shows it (documentation comments included).
    pub fn script(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.script.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every documented line of the block, in order.
    pub fn documented(&self) -> impl Iterator<Item = &DocLine> {
        self.segments.iter().flat_map(|s| s.documented.iter())
    }
}

/// Commands run as one step, and the output the lesson documents for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Markdown line of the segment's first line.
    pub line: usize,
    /// Shell text (may be empty when documentation precedes any command).
    pub script: String,
    /// Documented output lines, in order.
    pub documented: Vec<DocLine>,
}

/// One line of documented output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocLine {
    /// Markdown line it is on.
    pub line: usize,
    /// The documented text exactly as written on that line (without a comment's `# 输出:`).
    pub text: String,
    /// Where in the markdown it comes from.
    pub origin: DocOrigin,
}

/// Where a documented line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocOrigin {
    /// A code block introduced by `输出：` or the like.
    OutputBlock,
    /// A `# 输出: ...` comment in the shell block.
    Comment,
    /// A non-prompt line of a console block.
    Console,
}

/// Words that, followed by a colon, introduce documented output (compared lowercased).
const OUTPUT_WORDS: &[&str] = &[
    "输出",
    "輸出",
    "出力",
    "実行結果",
    "执行结果",
    "运行结果",
    "结果",
    "output",
    "example output",
    "sample output",
    "expected output",
];

/// The most characters between an output word and its colon (`输出示例：`, `输出应该是:`).
const MAX_MARKER_TAIL: usize = 4;

/// `text` (a paragraph, or a comment's text after `#`) starts like `输出：` / `Output:`; returns
/// what follows the colon.
fn after_output_marker(text: &str) -> Option<&str> {
    let (colon, colon_len) = text
        .char_indices()
        .find(|(_, c)| *c == ':' || *c == '：')
        .map(|(i, c)| (i, c.len_utf8()))?;
    let head = text[..colon].trim().to_lowercase();
    let head = head.trim_matches('*').trim();
    let tail_ok = OUTPUT_WORDS.iter().any(|w| {
        head.strip_prefix(w)
            .is_some_and(|rest| rest.chars().count() <= MAX_MARKER_TAIL && !rest.contains(' '))
    });
    tail_ok.then(|| &text[colon + colon_len..])
}

/// A paragraph that only says "output:" (in some language), introducing the next code block.
pub fn is_output_intro(paragraph: &str) -> bool {
    let p = paragraph.trim();
    p.chars().count() <= 24 && after_output_marker(p).is_some_and(|rest| rest.trim().is_empty())
}

/// A `# 输出: TEXT` comment line: returns TEXT.
pub fn output_comment(line: &str) -> Option<&str> {
    let body = line.trim_start().strip_prefix('#')?;
    let rest = after_output_marker(body.trim_start())?;
    let rest = rest.trim();
    (!rest.is_empty()).then_some(rest)
}

const SHELL_LANGUAGES: &[&str] = &["bash", "sh", "shell", "zsh", "console", "shell-session"];

/// Is this (unlabelled) block's text shell commands? Every non-blank line must be a comment, a
/// `$ ` prompt line, a continuation, or start with a word that could name a command.
pub fn looks_like_commands(text: &str) -> bool {
    let mut any = false;
    let mut continued = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let was_continued = continued;
        continued = t.ends_with('\\');
        if was_continued || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("$ ").unwrap_or(t);
        let word = t.split_whitespace().next().unwrap_or("");
        let word = word.split_once('=').map_or(word, |(name, _)| name);
        let first_ok = word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '.' || c == '/' || c == '~');
        if !first_ok
            || !word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./~+-".contains(c))
        {
            return false;
        }
        any = true;
    }
    any
}

/// Byte offset -> 1-based line number.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(src: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset)
    }
}

/// What came just before the current code block.
#[derive(Debug, PartialEq, Eq)]
enum Before {
    Nothing,
    ShellBlock,
    ShellThenIntro,
    Intro,
}

/// Extracts every shell block and its documented output from markdown `src`. Never fails: text
/// that is not a shell block is simply not one.
pub fn extract(src: &str) -> Lesson {
    let index = LineIndex::new(src);
    let mut lesson = Lesson::default();
    let mut section = String::new();
    let mut part = 0usize;
    let mut heading: Option<(pulldown_cmark::HeadingLevel, String, usize)> = None;
    let mut paragraph: Option<String> = None;
    // The open paragraph's line, whether it opened with bold, and its text length where the
    // bold ended: a paragraph that is all bold is a label.
    let mut bold: (usize, bool, Option<usize>) = (0, false, None);
    let mut code: Option<(String, usize, String)> = None; // (info, fence line, text)
    let mut before = Before::Nothing;
    for (event, range) in Parser::new_ext(src, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((level, String::new(), index.line_of(range.start)));
                before = Before::Nothing;
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text, line)) = heading.take() {
                    if level <= pulldown_cmark::HeadingLevel::H2 {
                        part += 1;
                    }
                    section = text.trim().to_owned();
                    lesson.headings.push(Heading {
                        line,
                        level: level as u8,
                        text: section.clone(),
                    });
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => lesson.links.push(LinkRef {
                line: index.line_of(range.start),
                dest: dest_url.to_string(),
                image: false,
            }),
            Event::Start(Tag::Image { dest_url, .. }) => lesson.links.push(LinkRef {
                line: index.line_of(range.start),
                dest: dest_url.to_string(),
                image: true,
            }),
            Event::Start(Tag::Paragraph) => {
                paragraph = Some(String::new());
                bold = (index.line_of(range.start), false, None);
            }
            Event::Start(Tag::Strong) if paragraph.as_ref().is_some_and(String::is_empty) => {
                bold.1 = true;
            }
            Event::End(TagEnd::Strong) if bold.1 && bold.2.is_none() => {
                bold.2 = paragraph.as_ref().map(String::len);
            }
            Event::End(TagEnd::Paragraph) => {
                let text = paragraph.take();
                if let Some(p) = &text
                    && bold.1
                    && bold.2 == Some(p.len())
                    && !p.trim().is_empty()
                {
                    lesson.labels.push(Heading {
                        line: bold.0,
                        level: 0,
                        text: p.trim().to_owned(),
                    });
                }
                let intro = text.is_some_and(|p| is_output_intro(&p));
                before = match (intro, &before) {
                    (true, Before::ShellBlock) => Before::ShellThenIntro,
                    (true, _) => Before::Intro,
                    // Prose between a shell block and its output's intro keeps them apart.
                    (false, _) => Before::Nothing,
                };
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((info, index.line_of(range.start), String::new()));
            }
            Event::End(TagEnd::CodeBlock) => {
                let Some((info, fence, text)) = code.take() else {
                    continue;
                };
                let fenced = src.get(range.clone()).is_some_and(|s| {
                    s.trim_start().starts_with("```") || s.trim_start().starts_with("~~~")
                });
                let first_content = if fenced { fence + 1 } else { fence };
                let language = info.split_whitespace().next().unwrap_or("").to_lowercase();
                if matches!(before, Before::ShellThenIntro | Before::Intro) {
                    let lines = text
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty());
                    let docs = lines.map(|(i, l)| DocLine {
                        line: first_content + i,
                        text: l.trim_end().to_owned(),
                        origin: DocOrigin::OutputBlock,
                    });
                    match (
                        &before,
                        lesson.blocks.last_mut().and_then(|b| b.segments.last_mut()),
                    ) {
                        (Before::ShellThenIntro, Some(segment)) => segment.documented.extend(docs),
                        _ => lesson.orphan_outputs.push(fence),
                    }
                    before = Before::Nothing;
                    continue;
                }
                let console = language == "console" || language == "shell-session";
                let shell = SHELL_LANGUAGES.contains(&language.as_str())
                    || (language.is_empty() && fenced && looks_like_commands(&text));
                before = Before::Nothing;
                if !shell {
                    continue;
                }
                let prompts = text.lines().any(|l| l.starts_with("$ "));
                let segments = if console || (language.is_empty() && prompts) {
                    console_segments(&text, first_content)
                } else {
                    script_segments(&text, first_content)
                };
                lesson.blocks.push(ShellBlock {
                    line: fence,
                    section: section.clone(),
                    part,
                    language,
                    segments,
                });
                before = Before::ShellBlock;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, text)) = code.as_mut() {
                    text.push_str(&t);
                } else if let Some((_, text, _)) = heading.as_mut() {
                    text.push_str(&t);
                } else if let Some(p) = paragraph.as_mut() {
                    p.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(p) = paragraph.as_mut() {
                    p.push(' ');
                }
            }
            Event::Start(Tag::List(_) | Tag::Table(_) | Tag::BlockQuote(_)) | Event::Rule => {
                before = Before::Nothing;
            }
            _ => {}
        }
    }
    lesson
}

/// A bash block: segments end at `# 输出:` comments, which document the commands before them.
fn script_segments(text: &str, first_line: usize) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut current = Segment {
        line: first_line,
        script: String::new(),
        documented: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let line = first_line + i;
        if let Some(doc) = output_comment(raw) {
            current.documented.push(DocLine {
                line,
                text: doc.to_owned(),
                origin: DocOrigin::Comment,
            });
            continue;
        }
        if !current.documented.is_empty() && raw.trim().is_empty() {
            continue;
        }
        if !current.documented.is_empty() {
            segments.push(std::mem::replace(
                &mut current,
                Segment {
                    line,
                    script: String::new(),
                    documented: Vec::new(),
                },
            ));
        }
        if current.script.is_empty() && raw.trim().is_empty() {
            current.line = line + 1;
            continue;
        }
        current.script.push_str(raw);
        current.script.push('\n');
    }
    segments.push(current);
    segments
}

/// A console block: each `$ ` line (with its `\` continuations or `> ` lines) is a segment,
/// and the lines after it up to the next prompt are its documented output.
fn console_segments(text: &str, first_line: usize) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut continuing = false;
    for (i, raw) in text.lines().enumerate() {
        let line = first_line + i;
        if let Some(cmd) = raw.strip_prefix("$ ") {
            segments.push(Segment {
                line,
                script: format!("{cmd}\n"),
                documented: Vec::new(),
            });
            continuing = cmd.trim_end().ends_with('\\');
            continue;
        }
        let Some(segment) = segments.last_mut() else {
            continue;
        };
        if continuing || (raw.starts_with("> ") && segment.documented.is_empty()) {
            let cmd = raw.strip_prefix("> ").unwrap_or(raw);
            segment.script.push_str(cmd);
            segment.script.push('\n');
            continuing = cmd.trim_end().ends_with('\\');
            continue;
        }
        if raw.trim().is_empty() {
            continue;
        }
        segment.documented.push(DocLine {
            line,
            text: raw.trim_end().to_owned(),
            origin: DocOrigin::Console,
        });
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_markers_in_several_languages() {
        for intro in [
            "输出：",
            "输出:",
            "输出示例：",
            "Output:",
            "**Output**:",
            "出力例：",
            "実行結果：",
        ] {
            assert!(is_output_intro(intro), "{intro}");
        }
        for not in [
            "后果：",
            "问题：",
            "Output is shown below, with more text:",
            "输出 的内容很多很多很多：",
        ] {
            assert!(!is_output_intro(not), "{not}");
        }
        assert_eq!(
            output_comment("# 输出: original content"),
            Some("original content")
        );
        assert_eq!(output_comment("  # 输出应该是: ftype=1"), Some("ftype=1"));
        assert_eq!(output_comment("# Output: total 0"), Some("total 0"));
        assert_eq!(output_comment("# 输出:"), None);
        assert_eq!(output_comment("# 修改文件"), None);
        assert_eq!(
            output_comment("# c--------- 1 root root 0, 0 ... deleted-file"),
            None
        );
    }

    #[test]
    fn unlabelled_blocks_hold_commands_or_not() {
        assert!(looks_like_commands("ls /tmp\nLOWER=x cat y\n# comment\n"));
        assert!(looks_like_commands("mount -t overlay \\\n  -o x,y /m\n"));
        assert!(!looks_like_commands(
            "overlay: upper fs does not support RENAME_WHITEOUT\n"
        ));
        assert!(!looks_like_commands("問題：Docker イメージ\n"));
        assert!(!looks_like_commands("┌────┐\n│ x  │\n"));
        assert!(!looks_like_commands("OverlayFS 分层结构:\n\n┌──┐\n"));
        assert!(!looks_like_commands("\n\n"));
    }

    #[test]
    fn comments_split_a_block_into_segments() {
        let src = "# 标题\n\n```bash\n# 修改\necho a\ncat x\n# 输出: a\n\ncat y\n# 输出: b\n```\n";
        let lesson = extract(src);
        let [block] = lesson.blocks.as_slice() else {
            panic!("one block: {lesson:?}")
        };
        assert_eq!(block.line, 3);
        assert_eq!(block.section, "标题");
        assert_eq!(block.segments.len(), 2);
        assert_eq!(block.segments[0].script, "# 修改\necho a\ncat x\n");
        assert_eq!(block.segments[0].line, 4);
        assert_eq!(block.segments[0].documented[0].line, 7);
        assert_eq!(block.segments[1].script, "cat y\n");
        assert_eq!(block.segments[1].line, 9);
        assert_eq!(block.segments[1].documented[0].text, "b");
    }

    #[test]
    fn an_introduced_block_documents_the_shell_block_before_it() {
        let src = "## A\n\n```bash\nls\n```\n\n输出：\n\n```\nx  y\n\nz\n```\n\n```\n图：not output\n```\n";
        let lesson = extract(src);
        assert_eq!(lesson.blocks.len(), 1);
        let docs: Vec<_> = lesson.blocks[0]
            .documented()
            .map(|d| (d.line, d.text.as_str()))
            .collect();
        assert_eq!(docs, [(10, "x  y"), (12, "z")]);
    }

    #[test]
    fn prose_between_keeps_an_intro_apart_and_orphans_are_noted() {
        let src = "```bash\nls\n```\n\nSome prose.\n\nOutput:\n\n```\nx\n```\n";
        let lesson = extract(src);
        assert_eq!(lesson.blocks[0].documented().count(), 0);
        assert_eq!(lesson.orphan_outputs, [9]);
    }

    #[test]
    fn console_blocks_pair_prompts_with_their_output() {
        let src = "```console\n$ echo a \\\n  b\na b\n$ true\n$ printf 'x\\ny\\n'\nx\ny\n```\n";
        let lesson = extract(src);
        let s = &lesson.blocks[0].segments;
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].script, "echo a \\\n  b\n");
        assert_eq!(s[0].documented[0].text, "a b");
        assert_eq!(s[0].documented[0].line, 4);
        assert!(s[1].documented.is_empty());
        assert_eq!(s[2].documented.len(), 2);
    }

    #[test]
    fn parts_follow_level_two_headings() {
        let src = "# T\n## A\n### a1\n```sh\ntrue\n```\n### a2\n```sh\ntrue\n```\n## B\n```sh\ntrue\n```\n";
        let lesson = extract(src);
        let parts: Vec<_> = lesson
            .blocks
            .iter()
            .map(|b| (b.part, b.section.as_str()))
            .collect();
        assert_eq!(parts, [(2, "a1"), (2, "a2"), (3, "B")]);
    }

    #[test]
    fn links_images_and_headings_keep_their_lines() {
        let src = "# Top\n\nSee [next](../02-x/) and\n![pic](img/a.png \"t\").\n\n## `code` part\n\n[ref]: ./r.md\n\nA [ref] link.\n\n```bash\n[not](a-link)\n```\n";
        let lesson = extract(src);
        let links: Vec<_> = lesson
            .links
            .iter()
            .map(|l| (l.line, l.dest.as_str(), l.image))
            .collect();
        assert_eq!(
            links,
            [
                (3, "../02-x/", false),
                (4, "img/a.png", true),
                (10, "./r.md", false)
            ]
        );
        let headings: Vec<_> = lesson
            .headings
            .iter()
            .map(|h| (h.line, h.level, h.text.as_str()))
            .collect();
        assert_eq!(headings, [(1, 1, "Top"), (6, 2, "code part")]);
        let labels = extract("**场景 3：x**\n\n**a** b\n\nc **d**\n\n**e**  \n");
        let labels: Vec<_> = labels
            .labels
            .iter()
            .map(|h| (h.line, h.text.as_str()))
            .collect();
        assert_eq!(labels, [(1, "场景 3：x"), (7, "e")]);
    }

    #[test]
    fn other_languages_are_not_run() {
        let src = "```dockerfile\nRUN ls\n```\n```json\n{}\n```\n```python\nprint(1)\n```\n";
        assert!(extract(src).blocks.is_empty());
    }
}
