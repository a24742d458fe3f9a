//! Can a block run here? Decided by probing the guest's session, never from the lesson's
//! words: for each command the block would start, is it a function, builtin or on PATH; for a
//! path it runs (`./demo.sh`), does it exist; for `cd DIR`, can the shell go there; for a
//! container engine, does it answer. The parsing here is pure and errs toward running: a word
//! it cannot read for sure (quotes, expansions) is not probed.

/// Something a block needs from the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A command by name (function, builtin or on PATH).
    Command(String),
    /// A command by path, relative to the cwd the block would have.
    Program(String),
    /// `cd` into this directory (as written: `~` and `$VAR` expand in the session).
    Dir(String),
    /// A container engine that must be serving, and the command that asks it.
    Engine(String, String),
}

/// Container engines: a client on PATH is not enough, the engine must answer.
const ENGINES: &[(&str, &str)] = &[("docker", "docker info"), ("podman", "podman info")];

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "select", "!", "{", "}", "[[", "]]", "time",
];

/// Words that run the word after them as a command.
const PREFIXES: &[&str] = &["sudo", "exec", "command", "nohup", "env", "xargs", "nice"];

/// The script without here-document bodies (`cat <<EOF ... EOF`): their lines are data.
fn without_heredocs(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut until: Option<String> = None;
    for line in script.lines() {
        if let Some(end) = &until {
            if line.trim() == end {
                until = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if let Some(at) = line.find("<<").filter(|at| !line[*at..].starts_with("<<<")) {
            let word: String = line[at + 2..]
                .trim_start_matches('-')
                .trim_start()
                .chars()
                .take_while(|c| !c.is_whitespace() && !";|&)".contains(*c))
                .filter(|c| !"'\"\\".contains(*c))
                .collect();
            if !word.is_empty() {
                until = Some(word);
            }
        }
    }
    out
}

/// Splits shell text into simple commands' words, roughly: quotes kept in words, comments
/// dropped, `$( )` and backquotes opening a command of their own.
fn commands(script: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    let mut word = String::new();
    let script = without_heredocs(script);
    let mut chars = script.chars().peekable();
    let mut quote: Option<char> = None;
    let end_word = |word: &mut String, out: &mut Vec<Vec<String>>| {
        if !word.is_empty()
            && let Some(last) = out.last_mut()
        {
            last.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            word.push(c);
            if c == q {
                quote = None;
            } else if c == '\\'
                && q == '"'
                && let Some(n) = chars.next()
            {
                word.push(n);
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                word.push(c);
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(n) => {
                    word.push('\\');
                    word.push(n);
                }
            },
            '#' if word.is_empty() => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut out);
                out.push(Vec::new());
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                if chars.peek() == Some(&'(') {
                    // Arithmetic: not a command.
                    word.push_str("$((");
                    chars.next();
                    continue;
                }
                end_word(&mut word, &mut out);
                out.push(Vec::new());
            }
            // `2>&1`, `>&2`, `&>file`: redirections, not separators.
            '&' if word.ends_with(['>', '<']) || chars.peek() == Some(&'>') => word.push(c),
            '`' | ';' | '|' | '&' | '(' | ')' | '\n' => {
                end_word(&mut word, &mut out);
                out.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut out),
            _ => word.push(c),
        }
    }
    end_word(&mut word, &mut out);
    out.retain(|c| !c.is_empty());
    out
}

/// Is `word` a shell assignment `NAME=value` (a prefix of a command, not its name)?
pub fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

fn is_redirect(word: &str) -> bool {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    w.starts_with('>') || w.starts_with('<')
}

/// A word the probe may quote literally: no quotes, expansions or globs.
fn plain(word: &str) -> bool {
    !word.is_empty() && !word.contains(['\'', '"', '$', '`', '*', '?', '[', '\\'])
}

/// What a script needs, in the order it needs it.
pub fn needs(script: &str) -> Vec<Need> {
    let mut needs: Vec<Need> = Vec::new();
    let push = |n: Need, needs: &mut Vec<Need>| {
        if !needs.contains(&n) {
            needs.push(n);
        }
    };
    // Words seen so far: a path the block itself names before it needs it (`mkdir -p D && cd
    // D`) may be made by the block, so it is not probed.
    let mut seen: Vec<String> = Vec::new();
    let made_here = |path: &str, seen: &[String]| {
        let path = path.trim_end_matches('/');
        seen.iter().any(|w| {
            let w = w.trim_matches(['"', '\'']);
            let stem = w.split('{').next().unwrap_or(w).trim_end_matches('/');
            stem.contains('/') && (w.starts_with(path) || path.starts_with(stem))
        })
    };
    for words in commands(script) {
        let before = seen.clone();
        seen.extend(words.iter().cloned());
        let seen = before;
        let mut i = 0;
        let mut in_header = false;
        while i < words.len() {
            let w = words[i].as_str();
            if in_header {
                // `for x in a b c`: words, not commands, until the next command.
                i += 1;
                continue;
            }
            if matches!(w, "for" | "case" | "select") {
                in_header = true;
                i += 1;
                continue;
            }
            if KEYWORDS.contains(&w) || is_assignment(w) {
                i += 1;
                continue;
            }
            if is_redirect(w) {
                // `> file` takes the next word; `>file` / `2>&1` do not.
                let bare = w.trim_start_matches(|c: char| c.is_ascii_digit());
                i += if matches!(bare, ">" | ">>" | "<" | "<<" | "<<<" | "&>") {
                    2
                } else {
                    1
                };
                continue;
            }
            if PREFIXES.contains(&w) {
                if plain(w) {
                    push(Need::Command(w.to_owned()), &mut needs);
                }
                i += 1;
                // The prefix's own options.
                while words
                    .get(i)
                    .is_some_and(|o| o.starts_with('-') || is_assignment(o))
                {
                    i += 1;
                }
                continue;
            }
            if !plain(w) {
                break;
            }
            if w == "cd" {
                match words.get(i + 1).map(String::as_str) {
                    Some(dir)
                        if !dir.starts_with('-')
                            && !dir.contains(['$', '`'])
                            && !made_here(dir, &seen) =>
                    {
                        push(Need::Dir(dir.trim_matches('"').to_owned()), &mut needs);
                    }
                    _ => {}
                }
            } else if w.contains('/') && made_here(w, &seen) {
                // Written by the block itself (`cat > ./x.sh`, `chmod +x x.sh`): it decides.
            } else if w.contains('/') {
                push(Need::Program(w.to_owned()), &mut needs);
            } else {
                push(Need::Command(w.to_owned()), &mut needs);
                if let Some((_, ask)) = ENGINES.iter().find(|(e, _)| *e == w) {
                    push(Need::Engine(w.to_owned(), (*ask).to_owned()), &mut needs);
                }
            }
            break;
        }
    }
    needs
}

/// Quotes a word for sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A script that checks `needs` in order (in a subshell: a `cd` there moves nothing) and prints
/// one `MISSING<TAB>reason` line for the first need that fails. `None` when there is nothing to
/// check. `~` in a `cd` target expands as the shell would.
pub fn probe_script(needs: &[Need]) -> Option<String> {
    if needs.is_empty() {
        return None;
    }
    let mut s = String::from("(\n");
    for need in needs {
        let (test, reason) = match need {
            Need::Command(c) => (
                format!("command -v {} >/dev/null 2>&1", quote(c)),
                format!("`{c}` is not installed here (not a command on PATH)"),
            ),
            Need::Program(p) => {
                let path = match p.strip_prefix("~/") {
                    Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
                    None => quote(p),
                };
                (
                    format!("[ -e {path} ]"),
                    format!("`{p}` does not exist here (the lesson does not include it)"),
                )
            }
            Need::Dir(d) => {
                let dir = match d.as_str() {
                    "~" => "\"$HOME\"".to_owned(),
                    _ => match d.strip_prefix("~/") {
                        Some(rest) => format!("\"$HOME\"/{}", quote(rest)),
                        None => quote(d),
                    },
                };
                (
                    format!("cd {dir} 2>/dev/null"),
                    format!("`cd {d}`: no such directory here (the course tree is not present)"),
                )
            }
            Need::Engine(e, ask) => (
                format!("{ask} >/dev/null 2>&1"),
                format!("the {e} engine is not running here (`{ask}` failed)"),
            ),
        };
        s.push_str(&format!(
            "{test} || {{ printf 'MISSING\\t%s\\n' {}; exit 0; }}\n",
            quote(&reason)
        ));
    }
    s.push_str(")\n");
    Some(s)
}

/// The reason a probe's output gives for skipping, if any.
pub fn missing(probe_output: &str) -> Option<String> {
    probe_output
        .lines()
        .find_map(|l| l.strip_prefix("MISSING\t"))
        .map(str::to_owned)
}

/// Shell variables a script assigns (`NAME=...` as a command, `export NAME=`, `read NAME`,
/// `for NAME in`).
pub fn assigned_variables(script: &str) -> Vec<String> {
    let mut vars = Vec::new();
    for words in commands(script) {
        let mut it = words.iter().map(String::as_str);
        while let Some(w) = it.next() {
            let name = if is_assignment(w) {
                w.split_once('=').map(|(n, _)| n)
            } else if matches!(w, "for" | "read" | "export" | "local") {
                it.next().map(|n| n.split_once('=').map_or(n, |(n, _)| n))
            } else {
                None
            };
            match name {
                Some(n) if is_assignment(&format!("{n}=")) => {
                    if !vars.iter().any(|v| v == n) {
                        vars.push(n.to_owned());
                    }
                }
                _ => break,
            }
        }
    }
    vars
}

/// Shell variables a script reads (`$NAME`, `${NAME...}`).
pub fn used_variables(script: &str) -> Vec<String> {
    let mut vars: Vec<String> = Vec::new();
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let start = i + 1 + usize::from(chars.get(i + 1) == Some(&'{'));
            let end = (start..chars.len())
                .find(|&k| !(chars[k].is_ascii_alphanumeric() || chars[k] == '_'))
                .unwrap_or(chars.len());
            let name: String = chars[start..end].iter().collect();
            if !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && !vars.contains(&name)
            {
                vars.push(name);
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Need {
        Need::Command(s.into())
    }

    #[test]
    fn needs_of_lesson_like_blocks() {
        assert_eq!(
            needs("cd ~/course/code\nsudo ./demo.sh\n"),
            [
                Need::Dir("~/course/code".into()),
                cmd("sudo"),
                Need::Program("./demo.sh".into())
            ]
        );
        assert_eq!(
            needs("# 查看\ndocker inspect x | jq '.[0]'\n"),
            [
                cmd("docker"),
                Need::Engine("docker".into(), "docker info".into()),
                cmd("jq")
            ]
        );
        assert_eq!(
            needs("LOWER=$(docker inspect x | jq -r .a | cut -d: -f1)\nsudo ls $LOWER\n")
                .iter()
                .filter(|n| matches!(n, Need::Command(_)))
                .count(),
            5
        );
        assert_eq!(
            needs("echo \"x\" | sudo tee -a /tmp/f >/dev/null 2>&1 &>/dev/null\n"),
            [cmd("echo"), cmd("sudo"), cmd("tee")]
        );
        assert_eq!(
            needs("for c in $(docker ps -q); do\n  echo \"=== $c ===\"\ndone\n"),
            [
                cmd("docker"),
                Need::Engine("docker".into(), "docker info".into()),
                cmd("echo")
            ]
        );
        assert_eq!(
            needs("mount -t overlay overlay \\\n  -o lowerdir=/a \\\n  /m\n"),
            [cmd("mount")]
        );
        assert_eq!(needs("\"$X\" arg\n"), []);
        assert_eq!(
            needs("mkdir -p /tmp/x/{a,b} && cd /tmp/x/a\ncd /tmp/y\n"),
            [cmd("mkdir"), Need::Dir("/tmp/y".into())]
        );
        assert_eq!(needs("echo $((1+2))\n"), [cmd("echo")]);
        assert_eq!(
            needs("cat > /tmp/s.sh <<'EOF'\nnot-a-command here\nEOF\nsh /tmp/s.sh\n"),
            [cmd("cat"), cmd("sh")]
        );
    }

    #[test]
    fn probe_reports_the_first_missing_need() {
        let script = probe_script(&[cmd("sh"), Need::Dir("~/x".into())]).unwrap_or_default();
        assert!(script.contains("cd \"$HOME\"/'x'"), "{script}");
        assert!(probe_script(&[]).is_none());
        assert_eq!(
            missing("noise\nMISSING\t`cd ~/x`: no such directory\n"),
            Some("`cd ~/x`: no such directory".into())
        );
        assert_eq!(missing("fine\n"), None);
    }

    #[test]
    fn variables_set_and_read() {
        let s = "LOWER=$(x)\nexport A=1 B=2\nfor c in 1; do echo; done\nUPPER=x cmd\n";
        assert_eq!(assigned_variables(s), ["LOWER", "A", "B", "c", "UPPER"]);
        assert_eq!(
            used_variables("sudo ls $LOWER ${UPPER}/tmp \"$1\" $$"),
            ["LOWER", "UPPER"]
        );
    }
}
