//! What a failed command's stderr says is missing, confirmed in the guest. A shell reports a
//! script whose `#!` interpreter is absent as the *script* being "not found", and a suite's
//! `mount ... /lower` on a mount point that does not exist as a failed command among its own
//! output; the user needs the cause. The stderr is outside bytes: read line by line, bounded,
//! never panicking (property-tested). Each clue is then checked by a small script run in the
//! same guest session, whose answer is parsed back into typed facts.

use labgrade_report::{Missing, MissingInGuest};

/// Most clues taken from one command's stderr.
pub const MAX_CLUES: usize = 8;
/// Longest name or path taken from a stderr line.
const MAX_NAME: usize = 4096;
/// The tag of the check script's answer lines.
const ANSWER: &str = "labgrade-missing";

/// Something a stderr line says could not be found; still to be confirmed in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clue {
    /// A shell could not run `name` (`sh: 1: NAME: not found`, `bash: NAME: command not found`):
    /// a program missing from PATH, a path that does not exist, or a script whose interpreter
    /// does not.
    NotFound {
        /// The name or path the shell tried.
        name: String,
    },
    /// bash's `SCRIPT: INTERPRETER: bad interpreter: No such file or directory`.
    BadInterpreter {
        /// The script.
        script: String,
        /// The interpreter its `#!` line names.
        interpreter: String,
    },
    /// `env: 'NAME': No such file or directory`: a `#!/usr/bin/env NAME` script's NAME.
    EnvNotFound {
        /// The program env looked for.
        name: String,
    },
    /// util-linux mount's `mount: PATH: mount point does not exist.` (or the older
    /// `mount: mount point PATH does not exist`).
    NoMountPoint {
        /// The mount point.
        path: String,
    },
}

/// A clue with the stderr line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What the line says is missing.
    pub clue: Clue,
    /// The line, as the command wrote it.
    pub line: String,
}

fn name(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= MAX_NAME && !s.contains('\0')).then(|| s.to_owned())
}

/// Strips the quotes env puts around a name: ASCII `'` or the UTF-8 `‘ ’` of a UTF-8 locale.
fn unquote(s: &str) -> &str {
    let s = s.trim();
    for (open, close) in [("'", "'"), ("\u{2018}", "\u{2019}"), ("\"", "\"")] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            return inner;
        }
    }
    s
}

fn clue_of(line: &str) -> Option<Clue> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_suffix(": bad interpreter: No such file or directory") {
        // `bash: ./run: /usr/bin/python3: bad interpreter: ...`: the last two fields.
        let mut fields = rest.rsplitn(3, ": ");
        let interpreter = name(fields.next()?)?;
        let script = name(fields.next()?)?;
        return Some(Clue::BadInterpreter {
            script,
            interpreter,
        });
    }
    if let Some(rest) = line.strip_suffix(": No such file or directory")
        && let Some((prog, quoted)) = rest.split_once(": ")
        && (prog == "env" || prog.ends_with("/env"))
    {
        return Some(Clue::EnvNotFound {
            name: name(unquote(quoted))?,
        });
    }
    if let Some(rest) = line
        .strip_suffix(": command not found")
        .or_else(|| line.strip_suffix(": not found"))
    {
        // `sh: 1: NAME: not found` (dash), `bash: line 1: NAME: command not found`: the shell's
        // own prefix is at least one field; NAME is the last.
        let (prefix, last) = rest.rsplit_once(": ")?;
        return shell_prefix(prefix).then(|| Some(Clue::NotFound { name: name(last)? }))?;
    }
    if let Some(rest) = line.strip_prefix("mount: ") {
        let path = rest
            .strip_suffix(": mount point does not exist.")
            .or_else(|| rest.strip_suffix(": mount point does not exist"))
            .or_else(|| {
                rest.strip_prefix("mount point ")
                    .and_then(|r| r.strip_suffix(" does not exist"))
            })?;
        return Some(Clue::NoMountPoint { path: name(path)? });
    }
    None
}

/// Is this what a shell puts before its own error: `sh: 1`, `bash: line 3`, `./x.sh: 4`, or a
/// bare shell name (`bash`)? Other programs' "not found" (`key: not found`) are no clue.
fn shell_prefix(prefix: &str) -> bool {
    let (before, last) = match prefix.rsplit_once(": ") {
        Some((before, last)) => (Some(before), last),
        None => (None, prefix),
    };
    let numbered = last.strip_prefix("line ").unwrap_or(last);
    if !numbered.is_empty() && numbered.bytes().all(|b| b.is_ascii_digit()) {
        return before.is_some_and(|b| !b.is_empty());
    }
    if last == "exec" {
        return before.is_some_and(shell_prefix);
    }
    let program = last.rsplit('/').next().unwrap_or_default();
    before.is_none()
        && matches!(
            program,
            "sh" | "bash" | "dash" | "ash" | "ksh" | "zsh" | "busybox"
        )
}

/// The clues in a failed command's stderr, in order, each once, at most [`MAX_CLUES`].
pub fn clues(stderr: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for line in stderr.lines() {
        let Some(clue) = clue_of(line) else {
            continue;
        };
        if found.iter().any(|f| f.clue == clue) {
            continue;
        }
        found.push(Found {
            clue,
            line: line.trim_end().chars().take(MAX_NAME).collect(),
        });
        if found.len() == MAX_CLUES {
            break;
        }
    }
    found
}

/// The directories a command `cd`s into (`cd DIR && ./run`), where a relative script it ran
/// is looked for; bounded, and only plain words (a `cd "$X"` is left out).
pub fn cd_targets(script: &str) -> Vec<String> {
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .map(|w| w.trim_matches(['\'', '"']))
        .filter(|w| !w.is_empty())
        .collect();
    let mut dirs = Vec::new();
    for pair in words.windows(2) {
        if pair[0] != "cd" {
            continue;
        }
        let dir = pair[1];
        if dir.is_empty() || dir.contains(['$', '`', '\'', '"', '\\']) || dir.len() > MAX_NAME {
            continue;
        }
        if !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_owned());
        }
        if dirs.len() == MAX_CLUES {
            break;
        }
    }
    dirs
}

/// The script that checks `found` in the guest: for each clue, a line
/// `labgrade-missing<TAB>INDEX<TAB>KIND<TAB>A[<TAB>B]` when the guest confirms it, nothing when
/// the thing is there after all. `quote` is the guest's shell quoting. It runs in a subshell:
/// a session's steps share one shell, whose options and variables it leaves as they were.
pub fn check_script(found: &[Found], dirs: &[String], quote: &dyn Fn(&str) -> String) -> String {
    let mut s = String::from(
        "(\nset -f\ncr=$(printf '\\r')\n\
         answer() { printf '%s\\t%s\\t%s\\t%s\\t%s\\n' labgrade-missing \"$@\"; }\n\
         # The interpreter of script $2 (found at $3), if it is missing.\n\
         interp() {\n\
         \x20 IFS= read -r first < \"$3\" 2>/dev/null || return 0\n\
         \x20 case \"$first\" in '#!'*) ;; *) return 0 ;; esac\n\
         \x20 set -- \"$1\" \"$3\" ${first#??}\n\
         \x20 case \"$3\" in *\"$cr\") answer \"$1\" interpreter-crlf \"$2\" \"${3%\"$cr\"}\"; return ;; esac\n\
         \x20 if [ ! -e \"$3\" ]; then answer \"$1\" interpreter \"$2\" \"$3\"; return; fi\n\
         \x20 case \"$3\" in */env) ;; *) return 0 ;; esac\n\
         \x20 [ -n \"$4\" ] || return 0\n\
         \x20 case \"$4\" in *\"$cr\") answer \"$1\" interpreter-crlf \"$2\" \"${4%\"$cr\"}\"; return ;; esac\n\
         \x20 command -v \"$4\" >/dev/null 2>&1 || answer \"$1\" interpreter \"$2\" \"$4\"\n\
         }\n",
    );
    let bases: String = dirs.iter().map(|d| format!(" {}", quote(d))).collect();
    for (i, f) in found.iter().enumerate() {
        let body = match &f.clue {
            Clue::NotFound { name } if name.contains('/') => {
                let n = quote(name);
                let rel = quote(name.trim_start_matches("./"));
                format!(
                    "hit=\ncase {n} in /*) [ -f {n} ] && hit={n} ;; *) for d in{bases} .; do \
                     [ -f \"$d\"/{rel} ] && {{ hit=\"$d\"/{rel}; break; }}; done ;; esac\n\
                     if [ -n \"$hit\" ]; then interp {i} {n} \"$hit\"; else answer {i} program {n} ''; fi\n"
                )
            }
            Clue::NotFound { name } | Clue::EnvNotFound { name } => {
                let n = quote(name);
                format!("command -v {n} >/dev/null 2>&1 || answer {i} program {n} ''\n")
            }
            Clue::BadInterpreter {
                script,
                interpreter,
            } => {
                let (s, p) = (quote(script), quote(interpreter));
                format!("[ -e {p} ] || answer {i} interpreter {s} {p}\n")
            }
            Clue::NoMountPoint { path } => {
                let p = quote(path);
                format!("[ -e {p} ] || answer {i} mount-point {p} ''\n")
            }
        };
        s.push_str(&body);
    }
    s.push_str("exit 0\n)\n");
    s
}

/// The confirmed facts in the check script's output, each with the stderr line of its clue.
/// Lines that are not answers, or name a clue that was not asked, are ignored.
pub fn confirmed(found: &[Found], output: &str) -> Vec<MissingInGuest> {
    let mut out: Vec<MissingInGuest> = Vec::new();
    for line in output.lines() {
        let mut fields = line.split('\t');
        if fields.next() != Some(ANSWER) {
            continue;
        }
        let (Some(index), Some(kind), Some(a), b) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some(clue) = index.parse::<usize>().ok().and_then(|i| found.get(i)) else {
            continue;
        };
        let b = b.unwrap_or_default().to_owned();
        let missing = match kind {
            "interpreter" | "interpreter-crlf" => Missing::Interpreter {
                script: a.to_owned(),
                interpreter: b,
                dos_line_ending: kind == "interpreter-crlf",
            },
            "program" => Missing::Program { name: a.to_owned() },
            "mount-point" => Missing::MountPoint { path: a.to_owned() },
            _ => continue,
        };
        if !out.iter().any(|m| m.missing == missing) {
            out.push(MissingInGuest {
                missing,
                stderr_line: clue.line.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Option<Clue> {
        clues(line).into_iter().next().map(|f| f.clue)
    }

    #[test]
    fn each_shell_s_words_give_their_clue() {
        let not_found = |n: &str| Some(Clue::NotFound { name: n.into() });
        assert_eq!(one("sh: 1: ./run: not found"), not_found("./run"));
        assert_eq!(one("sh: 1: exec: fs-op: not found"), not_found("fs-op"));
        assert_eq!(
            one("bash: python9: command not found"),
            not_found("python9")
        );
        assert_eq!(
            one("bash: line 1: python9: command not found"),
            not_found("python9")
        );
        assert_eq!(
            one("bash: ./run: /usr/bin/python3: bad interpreter: No such file or directory"),
            Some(Clue::BadInterpreter {
                script: "./run".into(),
                interpreter: "/usr/bin/python3".into()
            })
        );
        for env in [
            "/usr/bin/env: \u{2018}python9\u{2019}: No such file or directory",
            "env: 'python9': No such file or directory",
        ] {
            assert_eq!(
                one(env),
                Some(Clue::EnvNotFound {
                    name: "python9".into()
                })
            );
        }
        for mount in [
            "mount: /lower: mount point does not exist.",
            "mount: mount point /lower does not exist",
        ] {
            assert_eq!(
                one(mount),
                Some(Clue::NoMountPoint {
                    path: "/lower".into()
                })
            );
        }
    }

    #[test]
    fn ordinary_failures_are_no_clue_and_repeats_count_once() {
        assert!(clues("FAIL copy_up\nTraceback (most recent call last):\nnot found\n").is_empty());
        assert!(clues("grep: /etc/x: No such file or directory").is_empty());
        assert!(clues("ERROR: key: not found\nE: 3: not found").is_empty());
        assert_eq!(
            one("./suite.sh: line 3: fs-op: command not found"),
            Some(Clue::NotFound {
                name: "fs-op".into()
            })
        );
        let twice = clues("sh: 1: a: not found\nsh: 2: a: not found\nsh: 3: b: not found\n");
        assert_eq!(twice.len(), 2);
        assert_eq!(twice[0].line, "sh: 1: a: not found");
    }

    #[test]
    fn cd_targets_are_the_plain_directories_a_command_enters() {
        assert_eq!(
            cd_targets("sh -c 'cd /opt/suite && ./run --ov; cd \"/srv/x\"; cd $HOME'"),
            vec!["/opt/suite".to_owned(), "/srv/x".to_owned()]
        );
        assert!(cd_targets("echo cd").is_empty());
    }

    #[test]
    fn answers_become_typed_facts_with_their_stderr_line() {
        let found = clues(
            "sh: 1: ./run: not found\nmount: /lower: mount point does not exist.\nsh: 1: x: not found",
        );
        let output = "noise\nlabgrade-missing\t0\tinterpreter\t/opt/s/run\t/usr/bin/python3\n\
                      labgrade-missing\t1\tmount-point\t/lower\t\n\
                      labgrade-missing\t9\tprogram\tx\t\nlabgrade-missing\t2\tbogus\tx\t\n";
        let facts = confirmed(&found, output);
        assert_eq!(
            facts,
            vec![
                MissingInGuest {
                    missing: Missing::Interpreter {
                        script: "/opt/s/run".into(),
                        interpreter: "/usr/bin/python3".into(),
                        dos_line_ending: false,
                    },
                    stderr_line: "sh: 1: ./run: not found".into(),
                },
                MissingInGuest {
                    missing: Missing::MountPoint {
                        path: "/lower".into()
                    },
                    stderr_line: "mount: /lower: mount point does not exist.".into(),
                },
            ]
        );
    }

    /// The check script, run by a real `sh` on this machine, confirms what is missing and
    /// says nothing of what is there.
    #[test]
    fn the_check_script_confirms_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("no-python", "#!/usr/bin/python-not-here\nprint(1)\n");
        write("dos", "#!/bin/sh\r\necho hi\r\n");
        write("env-missing", "#!/usr/bin/env python-not-here -u\n");
        write("fine", "#!/bin/sh\n");
        let stderr = "sh: 1: ./no-python: not found\nsh: 1: ./dos: not found\n\
                      sh: 1: ./env-missing: not found\nsh: 1: ./fine: not found\n\
                      sh: 1: sh: not found\nsh: 1: no-such-program-here: not found\n\
                      mount: /no/such/mount/point: mount point does not exist.\n\
                      mount: /: mount point does not exist.\n";
        let found = clues(stderr);
        let dirs = vec![dir.path().display().to_string()];
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let script = check_script(&found, &dirs, &quote);
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir("/")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let facts: Vec<Missing> = confirmed(&found, &String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .map(|m| m.missing)
            .collect();
        let at = |n: &str| format!("{}/{n}", dir.path().display());
        assert_eq!(
            facts,
            vec![
                Missing::Interpreter {
                    script: at("no-python"),
                    interpreter: "/usr/bin/python-not-here".into(),
                    dos_line_ending: false,
                },
                Missing::Interpreter {
                    script: at("dos"),
                    interpreter: "/bin/sh".into(),
                    dos_line_ending: true,
                },
                Missing::Interpreter {
                    script: at("env-missing"),
                    interpreter: "python-not-here".into(),
                    dos_line_ending: false,
                },
                Missing::Program {
                    name: "no-such-program-here".into()
                },
                Missing::MountPoint {
                    path: "/no/such/mount/point".into()
                },
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_stderr_is_read_without_panic(text in ".{0,400}") {
            let found = clues(&text);
            prop_assert!(found.len() <= MAX_CLUES);
            let _ = cd_targets(&text);
            let _ = confirmed(&found, &text);
        }

        #[test]
        fn mutated_clue_lines_never_panic(
            prefix in "[a-z/ :0-9]{0,20}",
            name in "[^\n]{0,40}",
            tail in prop::sample::select(vec![
                ": not found", ": command not found",
                ": bad interpreter: No such file or directory",
                ": No such file or directory", ": mount point does not exist.",
            ]),
        ) {
            let line = format!("{prefix}{name}{tail}");
            for f in clues(&line) {
                let answer = format!("labgrade-missing\t0\tinterpreter\t{name}\t{name}");
                prop_assert_eq!(confirmed(std::slice::from_ref(&f), &answer).len(), 1);
            }
        }
    }
}
