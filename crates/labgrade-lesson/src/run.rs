//! Running a lesson's blocks on a guest, as a student would: the blocks of one part of the
//! lesson (a `##` section with its subsections) in order, in one shell session, so variables,
//! cwd and mounts carry from block to block. `sudo` works when already root. A block that cannot
//! run here is skipped with the probed reason; one that hangs is stopped at the time limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use labgrade_guest::{AgentSession, Guest, GuestError};

use crate::extract::{Lesson, ShellBlock};
use crate::probe;

/// How the blocks run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The most one block may take; a block still running then is stopped and reported.
    pub block_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            block_timeout: Duration::from_secs(60),
        }
    }
}

/// What happened to one block (raw: not yet compared with the lesson).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRun {
    /// It ran: each segment's output, stdout and stderr together as a terminal shows them.
    Ran {
        /// One per segment of the block.
        outputs: Vec<String>,
        /// Exit code of its last command.
        exit_code: Option<i32>,
    },
    /// It could not run here.
    Skipped(String),
    /// It was stopped at the time limit (the output so far, per segment that ran).
    TimedOut {
        /// Outputs of the segments that ran, the stopped one last.
        outputs: Vec<String>,
        /// The limit it hit.
        limit: Duration,
    },
}

/// A lesson's run on one guest.
#[derive(Debug, Clone)]
pub struct LessonRun {
    /// One per block of the lesson, in order.
    pub blocks: Vec<BlockRun>,
    /// Whether the session ran as real root (else in a user namespace).
    pub root: bool,
    /// Wall time.
    pub duration: Duration,
}

/// `sudo` for a student who is already root: run the command, minus sudo's own options.
const PREAMBLE: &str = r#"sudo() {
  while [ $# -gt 0 ]; do
    case $1 in
      --) shift; break ;;
      -u|-g|-C|-D|-p|-r|-t|-U|-h) shift 2 ;;
      -*) shift ;;
      *) break ;;
    esac
  done
  "$@"
}
"#;

/// One lesson part's session and what it knows.
struct PartSession {
    session: AgentSession,
    step: usize,
    /// Why the session cannot run more blocks (a block timed out or ended the shell).
    ended: Option<String>,
    /// Variables set by blocks that were skipped: a block using them is skipped too.
    unset: Vec<(String, usize)>,
}

impl PartSession {
    fn start(guest: &dyn Guest) -> Result<PartSession, GuestError> {
        let mut session = guest.start_session()?;
        session.run_step(0, PREAMBLE, Duration::from_secs(10), None)?;
        Ok(PartSession {
            session,
            step: 0,
            ended: None,
            unset: Vec::new(),
        })
    }

    fn next_step(&mut self) -> usize {
        self.step += 1;
        self.step
    }
}

/// Runs every block of `lesson` on `guest`.
pub fn run_lesson(
    lesson: &Lesson,
    guest: &dyn Guest,
    options: &RunOptions,
) -> Result<LessonRun, GuestError> {
    let started = Instant::now();
    let mut blocks = Vec::with_capacity(lesson.blocks.len());
    let mut engines: HashMap<String, Option<String>> = HashMap::new();
    let mut root = true;
    let mut current: Option<(usize, PartSession)> = None;
    for block in &lesson.blocks {
        if current.as_ref().is_none_or(|(part, _)| *part != block.part) {
            if let Some((_, mut old)) = current.take() {
                let _ = old.session.shutdown();
            }
            let session = PartSession::start(guest)?;
            root = root && session.session.hello().privilege == labgrade_proto::Privilege::Root;
            current = Some((block.part, session));
        }
        let Some((_, part)) = current.as_mut() else {
            continue;
        };
        let block_started = Instant::now();
        let run = run_block(block, part, &mut engines, options)?;
        match &run {
            BlockRun::Skipped(why) => tracing::debug!(line = block.line, why, "block skipped"),
            _ => {
                tracing::debug!(line = block.line, elapsed = ?block_started.elapsed(), "block ran")
            }
        }
        if let BlockRun::Skipped(_) = run {
            for var in probe::assigned_variables(&block.script()) {
                part.unset.push((var, block.line));
            }
        }
        blocks.push(run);
    }
    if let Some((_, mut last)) = current.take() {
        let _ = last.session.shutdown();
    }
    Ok(LessonRun {
        blocks,
        root,
        duration: started.elapsed(),
    })
}

fn run_block(
    block: &ShellBlock,
    part: &mut PartSession,
    engines: &mut HashMap<String, Option<String>>,
    options: &RunOptions,
) -> Result<BlockRun, GuestError> {
    if let Some(why) = &part.ended {
        return Ok(BlockRun::Skipped(why.clone()));
    }
    let script = block.script();
    let used = probe::used_variables(&script);
    if let Some((var, line)) = part.unset.iter().find(|(v, _)| used.contains(v)) {
        return Ok(BlockRun::Skipped(format!(
            "uses ${var}, which the skipped block at line {line} sets"
        )));
    }
    let needs = probe::needs(&script);
    let (engine_needs, other_needs): (Vec<_>, Vec<_>) = needs
        .into_iter()
        .partition(|n| matches!(n, probe::Need::Engine(..)));
    if let Some(probe) = probe::probe_script(&other_needs) {
        let step = part.next_step();
        let out = part
            .session
            .run_step(step, &probe, Duration::from_secs(10), None)?;
        if let Some(why) = probe::missing(&out.stdout) {
            return Ok(BlockRun::Skipped(why));
        }
    }
    for need in &engine_needs {
        let probe::Need::Engine(name, _) = need else {
            continue;
        };
        let verdict = match engines.get(name) {
            Some(v) => v.clone(),
            None => {
                let step = part.next_step();
                let probe = probe::probe_script(std::slice::from_ref(need)).unwrap_or_default();
                let out = part
                    .session
                    .run_step(step, &probe, Duration::from_secs(30), None)?;
                let v = probe::missing(&out.stdout);
                engines.insert(name.clone(), v.clone());
                v
            }
        };
        if let Some(why) = verdict {
            return Ok(BlockRun::Skipped(why));
        }
    }
    let started = Instant::now();
    let mut outputs = Vec::with_capacity(block.segments.len());
    let mut exit_code = Some(0);
    for segment in &block.segments {
        if segment.script.trim().is_empty() {
            outputs.push(String::new());
            continue;
        }
        let left = options.block_timeout.saturating_sub(started.elapsed());
        let step = part.next_step();
        // stderr into stdout, as a terminal interleaves them.
        let wrapped = format!("{{\n{}\n}} 2>&1", segment.script);
        let out = part.session.run_step(step, &wrapped, left, None)?;
        let mut text = out.stdout;
        text.push_str(&out.stderr);
        outputs.push(text);
        if out.timed_out {
            part.ended = Some(format!(
                "not run: the block at line {} hung and its shell session was stopped",
                block.line
            ));
            return Ok(BlockRun::TimedOut {
                outputs,
                limit: options.block_timeout,
            });
        }
        if out.session_ended {
            part.ended = Some(format!(
                "not run: the block at line {} ended the shell session",
                block.line
            ));
        }
        exit_code = out.exit_code;
    }
    Ok(BlockRun::Ran { outputs, exit_code })
}
