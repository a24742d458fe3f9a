//! From TOML text to a validated [`Lab`], or an error that points at the mistake.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use labgrade_proto::EntryKind;
use serde::Deserialize;
use toml::Spanned;

use crate::disk::parse_size_mib;
use crate::error::{InvalidLab, SpecError};
use crate::lab::{Check, ExitExpectation, Fact, Lab, LessonRef, OutputCheck, Step};
use crate::{Capability, DEFAULT_DISK_MIB, Disk, DiskFormat, Filesystem, MAX_DISK_MIB};

/// How long a step may run unless its lab says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

const HELP_FORMAT: &str = "the lab file format is described in labs/README.md";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    title: String,
    lesson: LessonRef,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    pending: Option<String>,
    snapshot: Option<OneOrMany>,
    #[serde(default)]
    engines: Vec<Spanned<String>>,
    #[serde(default, rename = "disk")]
    disks: Vec<Spanned<RawDisk>>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    name: Spanned<String>,
    fs: Spanned<String>,
    #[serde(default)]
    mkfs: String,
    size: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    run: Option<Spanned<String>>,
    fails: Option<bool>,
    exit: Option<i32>,
    stdout: Option<String>,
    stdout_contains: Option<String>,
    stderr_contains: Option<String>,
    kmsg_contains: Option<String>,
    #[serde(default)]
    expect: Vec<Spanned<RawCheck>>,
    snapshot: Option<OneOrMany>,
    timeout_secs: Option<u64>,
}

/// One check as written in a file (a lab step's `expect` entry), before validation. Other file
/// formats that reuse lab checks (assignments) deserialize it and validate with [`parse_check`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    path: Spanned<String>,
    exists: Option<bool>,
    absent: Option<bool>,
    kind: Option<Spanned<String>>,
    whiteout: Option<bool>,
    opaque: Option<bool>,
    content: Option<String>,
    contains: Option<String>,
    size: Option<u64>,
    sha256: Option<Spanned<String>>,
    entries: Option<Vec<String>>,
    xattr: Option<String>,
    no_xattr: Option<String>,
    unchanged_since: Option<Spanned<toml::Value>>,
}

/// Reads and validates one lab file.
pub fn load_lab(path: &Path) -> Result<Lab, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_lab(path, &text)
}

/// Reads every `*.toml` lab in a directory, in file-name order. A broken file is an error: a
/// lesson whose labs cannot all be read is not verified.
pub fn load_dir(dir: &Path) -> Result<Vec<Lab>, SpecError> {
    let read_err = |source| SpecError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let labs = files
        .iter()
        .map(|f| load_lab(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashMap::new();
    for lab in &labs {
        if let Some(other) = seen.insert(lab.id.clone(), lab.path.clone()) {
            let text = std::fs::read_to_string(&lab.path).unwrap_or_default();
            return Err(InvalidLab::error(
                &lab.path.display().to_string(),
                &text,
                0..0,
                format!("lab id `{}` is also the id of {}", lab.id, other.display()),
                Some(
                    "rename one of the files: a lab's id is its file name without the NN- prefix"
                        .into(),
                ),
            ));
        }
    }
    Ok(labs.into_iter().flat_map(Lab::per_engine).collect())
}

/// The id of a lab file: its stem without a leading `NN-` ordering prefix.
pub fn lab_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.split_once('-') {
        Some((prefix, rest))
            if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.to_owned()
        }
        _ => stem,
    }
}

/// Parses lab text; `path` names the file in errors and gives the lab its id.
pub fn parse_lab(path: &Path, text: &str) -> Result<Lab, SpecError> {
    let file = path.display().to_string();
    let err = |span: std::ops::Range<usize>, msg: String, help: Option<String>| {
        InvalidLab::error(&file, text, span, msg, help)
    };
    let raw: RawLab = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_owned();
        let help = if msg.starts_with("unknown field") {
            Some(format!("check the spelling; {HELP_FORMAT}"))
        } else if msg.starts_with("missing field") {
            Some(format!("add the field; {HELP_FORMAT}"))
        } else {
            Some("this is not valid TOML here".to_owned())
        };
        err(e.span().unwrap_or(0..0), msg, help)
    })?;

    let mut needs = Vec::new();
    for need in &raw.needs {
        let cap = Capability::from_str(need.get_ref()).map_err(|_| {
            let known: Vec<String> = Capability::ALL
                .iter()
                .map(|c| format!("`{c}` ({})", c.meaning()))
                .collect();
            err(
                need.span(),
                format!("unknown capability `{}`", need.get_ref()),
                Some(format!("known capabilities: {}", known.join(", "))),
            )
        })?;
        if !needs.contains(&cap) {
            needs.push(cap);
        }
    }

    let mut engines = Vec::new();
    for e in &raw.engines {
        let engine = labgrade_proto::Engine::from_str(e.get_ref()).map_err(|_| {
            let known: Vec<&str> = labgrade_proto::Engine::ALL
                .iter()
                .map(|e| e.as_str())
                .collect();
            err(
                e.span(),
                format!("unknown container engine `{}`", e.get_ref()),
                Some(format!("engines: {}", known.join(", "))),
            )
        })?;
        if !engines.contains(&engine) {
            engines.push(engine);
        }
    }

    let mut disks: Vec<Disk> = Vec::new();
    for spanned in &raw.disks {
        let d = spanned.get_ref();
        let disk = disk(d, &err)?;
        if disks.iter().any(|other| other.name == disk.name) {
            return Err(err(
                d.name.span(),
                format!("a second disk named `{}`", disk.name),
                Some("give each [[disk]] its own name".into()),
            ));
        }
        let cap = disk.format.fs.needs();
        if !needs.contains(&cap) {
            needs.push(cap);
        }
        disks.push(disk);
    }

    if raw.steps.is_empty() && raw.pending.is_none() {
        return Err(err(
            0..0,
            "a lab needs at least one [[step]]".into(),
            Some("add a [[step]] with `run = \"...\"`, or `pending = \"reason\"` if it cannot run yet".into()),
        ));
    }

    let mut names: HashMap<String, usize> = HashMap::new();
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, spanned_step) in raw.steps.into_iter().enumerate() {
        let number = i + 1;
        let step_span = spanned_step.span();
        let raw_step = spanned_step.into_inner();
        let Some(run) = raw_step.run else {
            return Err(err(
                step_span,
                format!("step {number} has no `run`"),
                Some("give the step its shell text: run = \"...\"".into()),
            ));
        };
        if let Some(name) = &raw_step.name
            && names.insert(name.clone(), number).is_some()
        {
            return Err(err(
                step_span,
                format!("two steps are named `{name}`"),
                Some("step names must be unique within a lab".into()),
            ));
        }
        let exit = match (raw_step.fails, raw_step.exit) {
            (Some(_), Some(_)) => {
                return Err(err(
                    step_span,
                    format!("step {number} sets both `fails` and `exit`"),
                    Some(
                        "keep one: `fails = true` for any failure, `exit = N` for one code".into(),
                    ),
                ));
            }
            (Some(true), None) => ExitExpectation::Failure,
            (Some(false), None) | (None, None) | (None, Some(0)) => ExitExpectation::Success,
            (None, Some(code)) => ExitExpectation::Code(code),
        };
        let mut output_checks = Vec::new();
        output_checks.extend(raw_step.stdout.map(OutputCheck::Stdout));
        output_checks.extend(raw_step.stdout_contains.map(OutputCheck::StdoutContains));
        output_checks.extend(raw_step.stderr_contains.map(OutputCheck::StderrContains));
        output_checks.extend(raw_step.kmsg_contains.map(OutputCheck::KmsgContains));

        let mut checks = Vec::new();
        for raw_check in raw_step.expect {
            let span = raw_check.span();
            let line = crate::error::line_col(text, span.start).0;
            for fact in facts(raw_check.get_ref(), number, &names, &err)? {
                checks.push(Check {
                    path: raw_check.get_ref().path.get_ref().clone(),
                    fact,
                    line,
                });
            }
            let p = &raw_check.get_ref().path;
            validate_rel_path(p.get_ref()).map_err(|why| {
                err(
                    p.span(),
                    why,
                    Some("check paths are relative to $LAB, e.g. \"upper/etc/app.conf\"".into()),
                )
            })?;
        }
        let snapshots = raw_step
            .snapshot
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        for s in &snapshots {
            validate_rel_path(s).map_err(|why| err(step_span.clone(), why, None))?;
        }
        let run_span = run.span();
        let run_line = first_content_line(text, run_span.start);
        steps.push(Step {
            number,
            name: raw_step.name,
            run: run.into_inner(),
            run_line,
            exit,
            output_checks,
            checks,
            snapshots,
            timeout: raw_step
                .timeout_secs
                .map_or(DEFAULT_STEP_TIMEOUT, Duration::from_secs),
        });
    }

    let end_snapshots = raw
        .snapshot
        .map(OneOrMany::into_vec)
        .unwrap_or_else(|| vec!["upper".to_owned()]);
    for s in &end_snapshots {
        validate_rel_path(s).map_err(|why| err(0..0, why, None))?;
    }

    Ok(Lab {
        id: lab_id(path),
        path: path.to_path_buf(),
        title: raw.title,
        lesson: raw.lesson,
        needs,
        disks,
        pending: raw.pending,
        steps,
        end_snapshots,
        engines,
        engine: None,
    })
}

fn disk(d: &RawDisk, err: &ErrFn<'_>) -> Result<Disk, SpecError> {
    let name = d.name.get_ref();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(err(
            d.name.span(),
            format!("disk name `{name}` cannot name a shell variable"),
            Some(
                "use lower-case letters, digits and `_`, e.g. `name = \"xfs\"` for $DISK_XFS"
                    .into(),
            ),
        ));
    }
    let fs = Filesystem::ALL
        .into_iter()
        .find(|f| f.as_str() == d.fs.get_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = Filesystem::ALL.iter().map(|f| f.as_str()).collect();
            err(
                d.fs.span(),
                format!("unknown filesystem `{}`", d.fs.get_ref()),
                Some(format!("scratch disks can be: {}", known.join(", "))),
            )
        })?;
    let size_mib = match &d.size {
        None => DEFAULT_DISK_MIB,
        Some(size) => match parse_size_mib(size.get_ref()) {
            Some(mib) if (1..=MAX_DISK_MIB).contains(&mib) => mib,
            _ => {
                return Err(err(
                    size.span(),
                    format!(
                        "disk size `{}` is not a size from 1M to {MAX_DISK_MIB}M",
                        size.get_ref()
                    ),
                    Some("write it like `300M` or `1G`".into()),
                ));
            }
        },
    };
    Ok(Disk {
        name: name.clone(),
        format: DiskFormat {
            fs,
            mkfs: d.mkfs.split_whitespace().map(str::to_owned).collect(),
            size_mib,
        },
    })
}

type ErrFn<'a> = dyn Fn(std::ops::Range<usize>, String, Option<String>) -> SpecError + 'a;

fn facts(
    c: &RawCheck,
    step: usize,
    names: &HashMap<String, usize>,
    err: &ErrFn<'_>,
) -> Result<Vec<Fact>, SpecError> {
    let mut out = Vec::new();
    match (c.exists, c.absent) {
        (Some(true), Some(true)) | (Some(false), Some(false)) => {
            return Err(err(
                c.path.span(),
                "`exists` and `absent` contradict each other".into(),
                Some("keep one of them".into()),
            ));
        }
        (Some(true), _) | (_, Some(false)) => out.push(Fact::Exists),
        (Some(false), _) | (_, Some(true)) => out.push(Fact::Absent),
        (None, None) => {}
    }
    if let Some(kind) = &c.kind {
        let k = EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind.get_ref())
        .ok_or_else(|| {
            err(
                kind.span(),
                format!("unknown kind `{}`", kind.get_ref()),
                Some("kinds: file, dir, symlink, char, block, fifo, socket (a whiteout is `whiteout = true`)".into()),
            )
        })?;
        out.push(Fact::Kind(k));
    }
    out.extend(c.whiteout.map(Fact::Whiteout));
    out.extend(c.opaque.map(Fact::Opaque));
    out.extend(c.content.clone().map(Fact::Content));
    out.extend(c.contains.clone().map(Fact::Contains));
    out.extend(c.size.map(Fact::Size));
    if let Some(d) = &c.sha256 {
        let hex = d.get_ref().to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                d.span(),
                "`sha256` must be 64 hex digits".into(),
                Some("compute it with `sha256sum FILE`".into()),
            ));
        }
        out.push(Fact::Sha256(hex));
    }
    if let Some(e) = &c.entries {
        let mut sorted = e.clone();
        sorted.sort();
        out.push(Fact::Entries(sorted));
    }
    out.extend(c.xattr.clone().map(Fact::HasXattr));
    out.extend(c.no_xattr.clone().map(Fact::LacksXattr));
    if let Some(since) = &c.unchanged_since {
        let target = match since.get_ref() {
            toml::Value::Integer(n) => usize::try_from(*n).ok().filter(|n| *n >= 1 && *n < step),
            toml::Value::String(name) => names.get(name).copied().filter(|n| *n < step),
            _ => None,
        };
        let Some(target) = target else {
            return Err(err(
                since.span(),
                format!("`unchanged_since` must name an earlier step (this is step {step})"),
                Some("use the number of an earlier step (1-based) or its `name`".into()),
            ));
        };
        out.push(Fact::UnchangedSince(target));
    }
    if out.is_empty() {
        return Err(err(
            c.path.span(),
            format!("the check on `{}` asserts nothing", c.path.get_ref()),
            Some("add a fact: exists, absent, kind, whiteout, opaque, content, contains, size, sha256, entries, xattr, no_xattr or unchanged_since".into()),
        ));
    }
    Ok(out)
}

/// Validates one check written outside a lab (no steps, so no `unchanged_since`), with errors at
/// its place in `text` (the whole file `file`, which `check` was deserialized from).
pub fn parse_check(
    file: &str,
    text: &str,
    check: &Spanned<RawCheck>,
) -> Result<Vec<Check>, SpecError> {
    let err = |span: std::ops::Range<usize>, msg: String, help: Option<String>| {
        InvalidLab::error(file, text, span, msg, help)
    };
    let raw = check.get_ref();
    let line = crate::error::line_col(text, check.span().start).0;
    let facts = facts(raw, 1, &HashMap::new(), &err)?;
    validate_rel_path(raw.path.get_ref()).map_err(|why| {
        err(
            raw.path.span(),
            why,
            Some("check paths are relative to $LAB, e.g. \"upper/etc/app.conf\"".into()),
        )
    })?;
    Ok(facts
        .into_iter()
        .map(|fact| Check {
            path: raw.path.get_ref().clone(),
            fact,
            line,
        })
        .collect())
}

fn validate_rel_path(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    if p.is_empty() {
        return Err("the path is empty".into());
    }
    if path.is_absolute() {
        return Err(format!("`{p}` is absolute; paths are relative to $LAB"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{p}` leaves $LAB with `..`"));
    }
    Ok(())
}

/// The line where a string's content starts: a `"""` followed by a newline starts on the next.
fn first_content_line(text: &str, start: usize) -> usize {
    let (line, _) = crate::error::line_col(text, start);
    let rest = text.get(start..).unwrap_or_default();
    if rest.starts_with("\"\"\"\n") || rest.starts_with("'''\n") {
        line + 1
    } else {
        line
    }
}
