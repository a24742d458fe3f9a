//! What a lesson's shell blocks tell a student to do with paths: `cd` somewhere, `git
//! sparse-checkout set` some paths, `chmod +x` a script, run `./x.sh`, or write a file. A small
//! shell reader, not a shell: quotes, `\` continuations, `&&` `||` `;` `|` `&`, comments,
//! redirections and here-documents (whose bodies are not commands) are understood; anything
//! fancier is simply not an instruction. Never panics, whatever the text.

use labgrade_lesson::Lesson;
use labgrade_lesson::probe::is_assignment;

/// One thing the lesson tells a student to do that names a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `cd DIR` (or `pushd DIR`); `None` for a bare `cd` (home).
    Cd(Option<String>),
    /// `git sparse-checkout set|add PATH...`: paths relative to the repository root.
    SparseCheckout(Vec<String>),
    /// `chmod MODE FILE...` where MODE gives the owner the exec bit.
    ChmodExec(Vec<String>),
    /// `./x.sh ...` (also after `sudo`, `env`, `time`, `VAR=value`).
    Run {
        /// The program as written (`./x.sh`).
        program: String,
        /// Run through sudo.
        sudo: bool,
    },
    /// A file the commands write (`> f`, `tee f`, `touch f`, `cp a f`, an editor on `f`), which
    /// then need not be in the repository.
    Writes(String),
}

/// An instruction at its markdown line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based markdown line.
    pub line: usize,
    /// What it says.
    pub instruction: Instruction,
}

/// Every instruction of the lesson's shell blocks, in document order.
pub fn instructions(lesson: &Lesson) -> Vec<Located> {
    let mut out = Vec::new();
    for block in &lesson.blocks {
        for segment in &block.segments {
            script_instructions(&segment.script, segment.line, &mut out);
        }
    }
    out
}

/// The instructions of one piece of shell whose first line is markdown line `first_line`.
pub fn script_instructions(script: &str, first_line: usize, out: &mut Vec<Located>) {
    let mut heredoc: Vec<String> = Vec::new();
    let mut logical = String::new();
    let mut logical_line = first_line;
    for (i, raw) in script.lines().enumerate() {
        let line = first_line + i;
        if let Some(delim) = heredoc.first() {
            let t = raw.trim_start_matches('\t');
            if t == delim.as_str() || raw.trim() == delim.as_str() {
                heredoc.remove(0);
            }
            continue;
        }
        if logical.is_empty() {
            logical_line = line;
        }
        if let Some(body) = raw.strip_suffix('\\') {
            logical.push_str(body);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let words = tokenize(&logical);
        logical.clear();
        heredoc.extend(words.iter().filter_map(|t| match t {
            Token::Heredoc(d) => Some(d.clone()),
            _ => None,
        }));
        for command in split_commands(&words) {
            interpret(&command, logical_line, out);
        }
    }
}

/// A lexical piece of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A word, quotes removed; `quoted` when any part was quoted.
    Word(String),
    /// `&&`, `||`, `;`, `|`, `&`, `(`, `)`: ends a simple command.
    Separator,
    /// `>`, `>>`, `&>`, `2>`, ...: the next word is written.
    RedirectOut,
    /// `<`: the next word is read.
    RedirectIn,
    /// `<<DELIM` / `<<-DELIM` / `<<'DELIM'`: lines up to DELIM are data.
    Heredoc(String),
}

fn tokenize(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut in_word = false;
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut word, &mut in_word, &mut tokens),
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            ';' | '(' | ')' => {
                flush(&mut word, &mut in_word, &mut tokens);
                tokens.push(Token::Separator);
            }
            '|' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&'|') {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            '&' => {
                if chars.peek() == Some(&'>') {
                    chars.next();
                    if chars.peek() == Some(&'>') {
                        chars.next();
                    }
                    flush(&mut word, &mut in_word, &mut tokens);
                    tokens.push(Token::RedirectOut);
                    continue;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&'&') {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            '>' => {
                // `2>` / `1>`: the digit was the start of this redirection, not a word.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                if chars.peek() == Some(&'&') {
                    // `2>&1`: a duplication, nothing written.
                    chars.next();
                    while chars
                        .peek()
                        .is_some_and(|d| d.is_ascii_digit() || *d == '-')
                    {
                        chars.next();
                    }
                    continue;
                }
                if chars.peek() == Some(&'(') {
                    // `>(cmd)`: a process substitution; its command is read on.
                    continue;
                }
                tokens.push(Token::RedirectOut);
            }
            '<' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&'<') {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        // `<<<word`: a here-string, data on this line.
                        chars.next();
                        tokens.push(Token::RedirectIn);
                        continue;
                    }
                    if chars.peek() == Some(&'-') {
                        chars.next();
                    }
                    while chars.peek() == Some(&' ') {
                        chars.next();
                    }
                    let mut delim = String::new();
                    while let Some(&d) = chars.peek() {
                        if d == ' ' || d == '\t' || d == ';' || d == '|' || d == '&' || d == '>' {
                            break;
                        }
                        chars.next();
                        if d != '\'' && d != '"' && d != '\\' {
                            delim.push(d);
                        }
                    }
                    if !delim.is_empty() {
                        tokens.push(Token::Heredoc(delim));
                    }
                    continue;
                }
                if chars.peek() == Some(&'(') {
                    continue;
                }
                tokens.push(Token::RedirectIn);
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// A simple command: its words, and the files it redirects output to.
#[derive(Debug, Default)]
struct Simple {
    words: Vec<String>,
    written: Vec<String>,
}

fn split_commands(tokens: &[Token]) -> Vec<Simple> {
    let mut out = Vec::new();
    let mut current = Simple::default();
    let mut iter = tokens.iter();
    while let Some(t) = iter.next() {
        match t {
            Token::Word(w) => current.words.push(w.clone()),
            Token::Separator => out.push(std::mem::take(&mut current)),
            Token::RedirectOut => {
                if let Some(Token::Word(w)) = iter.next() {
                    current.written.push(w.clone());
                }
            }
            Token::RedirectIn => {
                let _ = iter.next();
            }
            Token::Heredoc(_) => {}
        }
    }
    out.push(current);
    out
}

/// Does a chmod mode give the owner the exec bit (`+x`, `u+x`, `a+rx`, `755`, `0700`)?
pub fn mode_adds_exec(mode: &str) -> bool {
    if !mode.is_empty() && mode.chars().all(|c| c.is_digit(8)) {
        let digits: Vec<u32> = mode.chars().filter_map(|c| c.to_digit(8)).collect();
        // The owner digit is the third from the right (`755`, `0755`, `4755`).
        return digits.len() >= 3 && digits[digits.len() - 3] & 1 == 1;
    }
    mode.split(',').any(|clause| {
        let who: String = clause.chars().take_while(|c| "ugoa".contains(*c)).collect();
        let rest = &clause[who.len()..];
        let owner = who.is_empty() || who.contains('u') || who.contains('a');
        owner && (rest.starts_with('+') || rest.starts_with('=')) && rest[1..].contains('x')
    })
}

const EDITORS: &[&str] = &["vim", "vi", "nano", "emacs", "gedit", "code", "touch"];

fn interpret(command: &Simple, line: usize, out: &mut Vec<Located>) {
    let mut push = |instruction| out.push(Located { line, instruction });
    for w in &command.written {
        push(Instruction::Writes(w.clone()));
    }
    let mut words = command.words.iter().map(String::as_str).peekable();
    let mut sudo = false;
    // Prefixes that run the rest as the command.
    while let Some(&w) = words.peek() {
        if is_assignment(w) {
            words.next();
        } else if w == "sudo" {
            sudo = true;
            words.next();
            while let Some(&opt) = words.peek() {
                if !opt.starts_with('-') {
                    break;
                }
                words.next();
                if matches!(opt, "-u" | "-g" | "-C" | "-D" | "-h" | "-p") {
                    words.next();
                }
            }
        } else if matches!(w, "env" | "time" | "nohup" | "exec" | "command") {
            words.next();
        } else {
            break;
        }
    }
    let Some(name) = words.next() else {
        return;
    };
    let args: Vec<&str> = words.collect();
    match name {
        "cd" | "pushd" => {
            let target = args.iter().find(|a| !a.starts_with('-') || **a == "-");
            push(Instruction::Cd(target.map(|s| (*s).to_owned())));
        }
        "git" => {
            let mut rest = args.iter().copied();
            // Global options before the subcommand (`-C dir`, `-c k=v`).
            let mut sub = None;
            while let Some(a) = rest.next() {
                if a == "-C" || a == "-c" {
                    rest.next();
                } else if !a.starts_with('-') {
                    sub = Some(a);
                    break;
                }
            }
            if sub == Some("sparse-checkout")
                && let Some(action) = rest.next()
                && (action == "set" || action == "add")
            {
                let paths: Vec<String> = rest
                    .filter(|a| !a.starts_with('-'))
                    .map(str::to_owned)
                    .collect();
                if !paths.is_empty() {
                    push(Instruction::SparseCheckout(paths));
                }
            }
        }
        "chmod" => {
            let mut operands = args
                .iter()
                .filter(|a| !a.starts_with('-') || a.contains('x'));
            if let Some(mode) = operands.next()
                && mode_adds_exec(mode.trim_start_matches('-'))
            {
                let files: Vec<String> = operands.map(|s| (*s).to_owned()).collect();
                push(Instruction::ChmodExec(files));
            }
        }
        "tee" => {
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                push(Instruction::Writes((*a).to_owned()));
            }
        }
        "cp" | "mv" | "install" | "ln" | "curl" | "wget" => {
            // The destination (the last operand), or `-o FILE` / `-O FILE` of a download.
            let mut written = args
                .iter()
                .rfind(|a| !a.starts_with('-'))
                .map(|s| (*s).to_owned());
            if let Some(i) = args.iter().position(|a| *a == "-o" || *a == "-O") {
                written = args.get(i + 1).map(|s| (*s).to_owned());
            }
            if let Some(w) = written {
                push(Instruction::Writes(w));
            }
        }
        _ if EDITORS.contains(&name) => {
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                push(Instruction::Writes((*a).to_owned()));
            }
        }
        _ if name.starts_with("./") && name.len() > 2 => push(Instruction::Run {
            program: name.to_owned(),
            sudo,
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(script: &str) -> Vec<(usize, Instruction)> {
        let mut out = Vec::new();
        script_instructions(script, 10, &mut out);
        out.into_iter().map(|l| (l.line, l.instruction)).collect()
    }

    #[test]
    fn cd_sparse_checkout_and_runs_with_their_lines() {
        let got = of("# 准备\n\
            cd ~/cloud-atlas && git sparse-checkout set foundations/linux/lx11-containers\n\
            cd ~/cloud-atlas/foundations/linux/lx11-containers/07-overlay-filesystems/code\n\
            sudo -E ./overlay-mount-demo.sh arg | tee out.log\n\
            chmod +x cow-demo.sh && ./cow-demo.sh 2>&1 > run.log\n");
        assert_eq!(
            got,
            [
                (11, Instruction::Cd(Some("~/cloud-atlas".into()))),
                (
                    11,
                    Instruction::SparseCheckout(vec!["foundations/linux/lx11-containers".into()])
                ),
                (
                    12,
                    Instruction::Cd(Some(
                        "~/cloud-atlas/foundations/linux/lx11-containers/07-overlay-filesystems/code"
                            .into()
                    ))
                ),
                (
                    13,
                    Instruction::Run {
                        program: "./overlay-mount-demo.sh".into(),
                        sudo: true
                    }
                ),
                (13, Instruction::Writes("out.log".into())),
                (14, Instruction::ChmodExec(vec!["cow-demo.sh".into()])),
                (14, Instruction::Writes("run.log".into())),
                (
                    14,
                    Instruction::Run {
                        program: "./cow-demo.sh".into(),
                        sudo: false
                    }
                ),
            ]
        );
    }

    #[test]
    fn heredoc_bodies_comments_and_continuations() {
        let got = of("cat > run.sh <<'EOF'\n\
            cd /nowhere\n\
            ./inside.sh\n\
            EOF\n\
            # cd ~/cloud-atlas/commented\n\
            git sparse-checkout set \\\n  a/b \\\n  c\n\
            echo '&& ./quoted.sh'\n");
        assert_eq!(
            got,
            [
                (10, Instruction::Writes("run.sh".into())),
                (
                    15,
                    Instruction::SparseCheckout(vec!["a/b".into(), "c".into()])
                ),
            ]
        );
    }

    #[test]
    fn chmod_modes_that_give_the_owner_exec() {
        for yes in [
            "+x", "u+x", "a+rx", "755", "0755", "4755", "u=rwx", "go-w,u+x",
        ] {
            assert!(mode_adds_exec(yes), "{yes}");
        }
        for no in ["644", "-x", "go+x", "u-x", "", "rw"] {
            assert!(!mode_adds_exec(no), "{no}");
        }
    }
}
