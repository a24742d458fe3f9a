//! The scripts under code/: every shell script parses (`bash -n`) and passes `shellcheck
//! --severity=error` when shellcheck is installed. Each tool runs once per script, on all cores
//! (std threads); shellcheck takes many scripts per process, since its start-up is most of its
//! cost. Verdicts are cached by tool version and content digest: a script that did not change
//! is not checked again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a file under code/ is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// A bash or POSIX sh script: `bash -n` and shellcheck.
    Shell,
    /// Anything else (Python, unit files, data): not checked.
    Other,
}

/// Shell by its shebang (`bash`, `sh`, `dash`, also through `env`), or, without one, by its
/// `.sh` / `.bash` name (a script students run with `bash x.sh`).
pub fn script_kind(name: &str, head: &[u8]) -> ScriptKind {
    let first = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let first = String::from_utf8_lossy(first);
    if let Some(shebang) = first.strip_prefix("#!") {
        let mut words = shebang.split_whitespace();
        let mut interpreter = words.next().unwrap_or("");
        if interpreter.rsplit('/').next() == Some("env") {
            interpreter = words.find(|w| !w.starts_with('-')).unwrap_or("");
        }
        let base = interpreter.rsplit('/').next().unwrap_or("");
        return if matches!(base, "bash" | "sh" | "dash") {
            ScriptKind::Shell
        } else {
            ScriptKind::Other
        };
    }
    if name.ends_with(".sh") || name.ends_with(".bash") {
        ScriptKind::Shell
    } else {
        ScriptKind::Other
    }
}

/// One problem a tool reports in a script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// 1-based line.
    pub line: usize,
    /// shellcheck's code (`SC2148` is 2148); none for `bash -n`.
    pub code: Option<u32>,
    /// What the tool says.
    pub message: String,
}

/// What the tools said of one script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `bash -n`'s complaint, if any (it stops at the first).
    pub syntax: Vec<Issue>,
    /// shellcheck's errors; `None` when shellcheck did not run on it.
    pub shellcheck: Option<Vec<Issue>>,
    /// Both came from the cache.
    pub cached: bool,
}

/// The tools, found once per run.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `bash --version`'s first line, when bash runs.
    pub bash: Result<String, String>,
    /// `shellcheck --version`'s version line, when shellcheck runs.
    pub shellcheck: Result<String, String>,
    /// Where verdicts are cached; none to always run the tools.
    pub cache: Option<PathBuf>,
}

fn version(program: &str, pick: impl Fn(&str) -> bool) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("{program} is not installed ({e})"))?;
    if !out.status.success() {
        return Err(format!("`{program} --version` failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find(|l| pick(l))
        .unwrap_or_default()
        .trim()
        .to_owned())
}

impl Tools {
    /// Finds bash and shellcheck on PATH.
    pub fn find(cache: Option<PathBuf>) -> Tools {
        Tools {
            bash: version("bash", |_| true),
            shellcheck: version("shellcheck", |l| l.starts_with("version:")),
            cache,
        }
    }
}

/// `bash -n` stderr (`FILE: line N: message`) -> its issues.
pub fn parse_bash_n(stderr: &str) -> Vec<Issue> {
    let mut issues: Vec<Issue> = Vec::new();
    for l in stderr.lines() {
        let Some((_, rest)) = l.split_once(": line ") else {
            continue;
        };
        let Some((n, message)) = rest.split_once(": ") else {
            continue;
        };
        let Ok(line) = n.trim().parse::<usize>() else {
            continue;
        };
        // bash repeats the offending text on a second line: keep it with the first.
        if let Some(last) = issues.last_mut()
            && last.line == line
        {
            last.message.push_str(": ");
            last.message.push_str(message.trim());
            continue;
        }
        issues.push(Issue {
            line,
            code: None,
            message: message.trim().to_owned(),
        });
    }
    if issues.is_empty() && !stderr.trim().is_empty() {
        issues.push(Issue {
            line: 1,
            code: None,
            message: stderr.trim().to_owned(),
        });
    }
    issues
}

#[derive(Debug, Deserialize)]
struct ShellcheckOutput {
    comments: Vec<ShellcheckComment>,
}

#[derive(Debug, Deserialize)]
struct ShellcheckComment {
    file: String,
    line: usize,
    code: u32,
    message: String,
}

/// shellcheck's `--format=json1` output -> issues per file as named on its command line.
pub fn parse_shellcheck(json: &str) -> Result<Vec<(String, Issue)>, String> {
    let out: ShellcheckOutput =
        serde_json::from_str(json).map_err(|e| format!("unreadable shellcheck output: {e}"))?;
    Ok(out
        .comments
        .into_iter()
        .map(|c| {
            (
                c.file,
                Issue {
                    line: c.line,
                    code: Some(c.code),
                    message: c.message,
                },
            )
        })
        .collect())
}

fn cache_key(tool: &str, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0]);
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn cache_get(dir: &Path, key: &str) -> Option<Vec<Issue>> {
    let text = std::fs::read(dir.join(key)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn cache_put(dir: &Path, key: &str, issues: &[Issue]) {
    if let Ok(bytes) = serde_json::to_vec(issues) {
        // A cache that cannot be written, or loses an entry in a crash, only costs the next run
        // time: written as a hint, not synced (a sync per script doubled a cold run).
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| labgrade_fs::write_hint_atomically(&dir.join(key), &bytes));
    }
}

/// A finished job: the script's index, the tool's issues (or why it failed), and whether
/// the tool was shellcheck.
type Done = (usize, Result<Vec<Issue>, String>, bool);

/// One unit of work for the pool.
enum Job {
    Syntax(usize),
    Shellcheck(Vec<usize>),
}

/// Runs the tools on `scripts` (absolute paths); returns a verdict per script, in order, and
/// the tool failures met (reported as skipped checks, never as passes).
pub fn check_scripts(scripts: &[PathBuf], tools: &Tools) -> (Vec<Verdict>, Vec<String>) {
    let bytes: Vec<Vec<u8>> = scripts
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_default())
        .collect();
    let bash_id = tools.bash.as_ref().ok().map(|v| format!("bash -n\0{v}"));
    let sc_id = tools
        .shellcheck
        .as_ref()
        .ok()
        .map(|v| format!("shellcheck --severity=error\0{v}"));
    let mut verdicts: Vec<Verdict> = vec![Verdict::default(); scripts.len()];
    let mut syntax_todo = Vec::new();
    let mut sc_todo = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let syntax = bash_id.as_ref().map(|id| {
            let key = cache_key(id, b);
            (tools.cache.as_deref().and_then(|d| cache_get(d, &key)), key)
        });
        let sc = sc_id.as_ref().map(|id| {
            let key = cache_key(id, b);
            (tools.cache.as_deref().and_then(|d| cache_get(d, &key)), key)
        });
        let mut all_cached = true;
        match syntax {
            Some((Some(issues), _)) => verdicts[i].syntax = issues,
            Some((None, key)) => {
                syntax_todo.push((i, key));
                all_cached = false;
            }
            None => {}
        }
        match sc {
            Some((Some(issues), _)) => verdicts[i].shellcheck = Some(issues),
            Some((None, key)) => {
                sc_todo.push((i, key));
                all_cached = false;
            }
            None => {}
        }
        verdicts[i].cached = all_cached && (bash_id.is_some() || sc_id.is_some());
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let mut jobs: Vec<Job> = Vec::new();
    if !sc_todo.is_empty() {
        // One shellcheck per thread, balanced by bytes (largest first onto the lightest batch):
        // a 600-line script costs as much as twenty small ones.
        let mut order: Vec<usize> = sc_todo.iter().map(|(i, _)| *i).collect();
        order.sort_by_key(|i| std::cmp::Reverse(bytes[*i].len()));
        let mut batches: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); threads];
        for i in order {
            if let Some(lightest) = batches.iter_mut().min_by_key(|(size, _)| *size) {
                lightest.0 += bytes[i].len();
                lightest.1.push(i);
            }
        }
        jobs.extend(
            batches
                .into_iter()
                .filter(|(_, b)| !b.is_empty())
                .map(|(_, b)| Job::Shellcheck(b)),
        );
    }
    jobs.extend(syntax_todo.iter().map(|(i, _)| Job::Syntax(*i)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(n) else { break };
                    let mut done = Vec::new();
                    match job {
                        Job::Syntax(i) => done.push((*i, run_bash_n(&scripts[*i]), false)),
                        Job::Shellcheck(batch) => match run_shellcheck(scripts, batch) {
                            Ok(per) => done.extend(per.into_iter().map(|(i, v)| (i, Ok(v), true))),
                            Err(e) => {
                                if let Ok(mut f) = failures.lock() {
                                    f.push(e);
                                }
                            }
                        },
                    }
                    if let Ok(mut r) = results.lock() {
                        r.extend(done);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut failures = failures.into_inner().unwrap_or_default();
    let key_of = |todo: &[(usize, String)], i: usize| {
        todo.iter().find(|(j, _)| *j == i).map(|(_, k)| k.clone())
    };
    for (i, result, is_sc) in results {
        match result {
            Ok(issues) => {
                let todo = if is_sc { &sc_todo } else { &syntax_todo };
                if let (Some(dir), Some(key)) = (tools.cache.as_deref(), key_of(todo, i)) {
                    cache_put(dir, &key, &issues);
                }
                if is_sc {
                    verdicts[i].shellcheck = Some(issues);
                } else {
                    verdicts[i].syntax = issues;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    (verdicts, failures)
}

fn run_bash_n(script: &Path) -> Result<Vec<Issue>, String> {
    let out = Command::new("bash")
        .arg("-n")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("bash -n {}: {e}", script.display()))?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_bash_n(&String::from_utf8_lossy(&out.stderr)))
}

/// shellcheck over a batch of scripts (indices into `scripts`): each script's issues.
fn run_shellcheck(
    scripts: &[PathBuf],
    batch: &[usize],
) -> Result<Vec<(usize, Vec<Issue>)>, String> {
    let out = Command::new("shellcheck")
        .args(["--severity=error", "--format=json1", "--"])
        .args(batch.iter().map(|i| &scripts[*i]))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("shellcheck: {e}"))?;
    // 0: clean, 1: issues found; anything else is shellcheck failing.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "shellcheck failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let issues = parse_shellcheck(&String::from_utf8_lossy(&out.stdout))?;
    Ok(batch
        .iter()
        .map(|&i| {
            let name = scripts[i].to_string_lossy();
            let mine = issues
                .iter()
                .filter(|(f, _)| *f == name)
                .map(|(_, issue)| issue.clone())
                .collect();
            (i, mine)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_by_shebang_or_name() {
        assert_eq!(script_kind("x", b"#!/bin/bash\necho"), ScriptKind::Shell);
        assert_eq!(
            script_kind("x", b"#!/usr/bin/env bash\n"),
            ScriptKind::Shell
        );
        assert_eq!(script_kind("x", b"#!/bin/sh -e\n"), ScriptKind::Shell);
        assert_eq!(
            script_kind("x.sh", b"#!/usr/bin/env python3\n"),
            ScriptKind::Other
        );
        assert_eq!(script_kind("x.sh", b"echo hi\n"), ScriptKind::Shell);
        assert_eq!(script_kind("x.service", b"[Unit]\n"), ScriptKind::Other);
        assert_eq!(script_kind("x", b""), ScriptKind::Other);
    }

    #[test]
    fn bash_n_messages() {
        let issues = parse_bash_n(
            "/t/x.sh: line 3: syntax error near unexpected token `then'\n/t/x.sh: line 3: `if then'\n",
        );
        assert_eq!(
            issues,
            [Issue {
                line: 3,
                code: None,
                message: "syntax error near unexpected token `then': `if then'".into()
            }]
        );
        assert_eq!(parse_bash_n("odd\n")[0].line, 1);
        assert!(parse_bash_n("").is_empty());
    }

    #[test]
    fn shellcheck_json1() -> Result<(), String> {
        let got = parse_shellcheck(
            r#"{"comments":[{"file":"/a.sh","line":1,"endLine":1,"column":1,"endColumn":2,"level":"error","code":2148,"message":"Add a shebang.","fix":null}]}"#,
        )?;
        assert_eq!(got[0].0, "/a.sh");
        assert_eq!(got[0].1.code, Some(2148));
        assert!(parse_shellcheck("not json").is_err());
        Ok(())
    }

    #[test]
    fn verdicts_are_cached_by_content() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let script = tmp.path().join("bad.sh");
        std::fs::write(&script, "#!/bin/bash\nif then\nfi\n")?;
        let tools = Tools {
            bash: version("bash", |_| true),
            shellcheck: Err("not used in this test".into()),
            cache: Some(tmp.path().join("cache")),
        };
        if tools.bash.is_err() {
            return Ok(());
        }
        let (first, failures) = check_scripts(std::slice::from_ref(&script), &tools);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(first[0].syntax.len(), 1);
        assert_eq!(first[0].syntax[0].line, 2);
        assert!(!first[0].cached);
        let (second, _) = check_scripts(std::slice::from_ref(&script), &tools);
        assert_eq!(second[0].syntax, first[0].syntax);
        assert!(second[0].cached);
        assert_eq!(second[0].shellcheck, None);
        Ok(())
    }
}
