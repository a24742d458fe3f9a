//! One bash session per lab: variables, cwd and mounts carry from step to step, as when a student
//! types the lesson's commands into one terminal.
//!
//! Each step's text is written to a file and sourced by a small driver function with stdin from
//! `/dev/null` and stdout / stderr to files. An `ERR` trap records every command that fails, as
//! `set -e` would see them, without ending the session; the driver reports the exit code and
//! the failed lines on fd 3.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use labgrade_proto::{FailedCommand, OUTPUT_LIMIT, StepOutcome};

/// Defined once at the start of the session; `__lg_step SCRIPT OUT ERR N` runs one step.
const DRIVER: &str = r#"
set -o errtrace
umask 022
cd "$LAB" || exit 99
__lg_step() {
  __lg_script=$1 __lg_failed=
  trap '__lg_c=$?; [ "${BASH_SOURCE[0]}" = "$__lg_script" ] && __lg_failed="$__lg_failed $LINENO:$__lg_c"' ERR
  . "$1" </dev/null >"$2" 2>"$3"
  __lg_rc=$?
  trap - ERR
  printf '%s %s%s\n' "$4" "$__lg_rc" "$__lg_failed" >&3
}
"#;

/// Receives streamed output: the stream's name (`stdout` / `stderr`) and the new bytes.
pub(crate) type OutputSink<'a> = dyn FnMut(&str, &[u8]) + 'a;

/// A running bash, init of the lab's pid namespace.
#[derive(Debug)]
pub(crate) struct ShellSession {
    child: Child,
    stdin: Option<ChildStdin>,
    status: StatusPipe,
    ctl: PathBuf,
    ended: bool,
}

/// Why the session could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the lab's shell session: {0}")]
pub struct SessionError(#[from] std::io::Error);

impl ShellSession {
    /// Starts `bash` with a clean environment, `$LAB` set and cwd `$LAB`.
    pub(crate) fn start(lab: &Path, ctl: &Path) -> Result<ShellSession, SessionError> {
        let (status_read, status_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let log = File::create(ctl.join("session.log"))?;
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc"])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LAB", lab)
            .env("HOME", lab)
            .env("LC_ALL", "C.UTF-8")
            .env("TERM", "dumb")
            .current_dir(lab)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        let write_fd = status_write.as_raw_fd();
        // SAFETY: the closure only makes raw syscalls (prctl, mount, dup2), which are
        // async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                crate::namespaces::mount_proc()?;
                if libc::dup2(write_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(status_write);
        let mut stdin = child.stdin.take();
        if let Some(stdin) = stdin.as_mut() {
            stdin.write_all(DRIVER.as_bytes())?;
            stdin.flush()?;
        }
        let status = StatusPipe {
            file: File::from(status_read),
            buf: Vec::new(),
        };
        Ok(ShellSession {
            child,
            stdin,
            status,
            ctl: ctl.to_path_buf(),
            ended: false,
        })
    }

    /// Runs one step and waits for it, at most `timeout`.
    pub(crate) fn run(
        &mut self,
        step: usize,
        script: &str,
        timeout: Duration,
        kmsg: &mut crate::kmsg::KernelLog,
        mut on_output: Option<&mut OutputSink<'_>>,
    ) -> StepOutcome {
        let started = Instant::now();
        let mut outcome = StepOutcome::default();
        if self.ended {
            outcome.session_ended = true;
            outcome.stderr = "the lab's shell session has already ended".into();
            return outcome;
        }
        let script_path = self.ctl.join(format!("step-{step}.sh"));
        let out = self.ctl.join(format!("step-{step}.out"));
        let err = self.ctl.join(format!("step-{step}.err"));
        let command = format!(
            "__lg_step {} {} {} {step}\n",
            script_path.display(),
            out.display(),
            err.display()
        );
        let sent = fs::write(&script_path, script).and_then(|()| match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(command.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("no stdin")),
        });
        if let Err(e) = sent {
            self.ended = true;
            outcome.session_ended = true;
            outcome.stderr = format!("cannot send the step to the shell: {e}");
            return outcome;
        }
        let deadline = started + timeout;
        let mut tails = [(out.clone(), 0u64, "stdout"), (err.clone(), 0u64, "stderr")];
        let status = loop {
            // Wake every 100 ms to pass on new output when the caller streams it.
            let slice = match on_output {
                Some(_) => (Instant::now() + Duration::from_millis(100)).min(deadline),
                None => deadline,
            };
            let line = self.status.read_line(slice);
            if let Some(f) = on_output.as_deref_mut() {
                for (path, pos, name) in &mut tails {
                    tail(path, pos, name, f);
                }
            }
            match line {
                StatusLine::TimedOut if Instant::now() < deadline => continue,
                other => break other,
            }
        };
        match status {
            StatusLine::Line(line) => parse_status(&line, &mut outcome),
            StatusLine::TimedOut => {
                outcome.timed_out = true;
                self.kill();
            }
            StatusLine::Closed => {
                outcome.session_ended = true;
                self.ended = true;
            }
        }
        outcome.stdout = read_limited(&out);
        outcome.stderr.push_str(&read_limited(&err));
        outcome.kmsg = kmsg.read_new();
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome
    }

    /// Sets a shell variable for the steps to come (the driver reads its stdin in order).
    pub(crate) fn export(&mut self, name: &str, value: &str) -> std::io::Result<()> {
        let quoted = value.replace('\'', r"'\''");
        match self.stdin.as_mut() {
            Some(stdin) => {
                stdin.write_all(format!("export {name}='{quoted}'\n").as_bytes())?;
                stdin.flush()
            }
            None => Err(std::io::Error::other("the shell session has ended")),
        }
    }

    /// Kills the session and with it (as init of the pid namespace) every process of the lab.
    pub(crate) fn kill(&mut self) {
        self.ended = true;
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ShellSession {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The driver's status lines on fd 3. Read with `poll`, not a thread: a process that has
/// unshared its pid namespace cannot create threads (`clone(CLONE_THREAD)` fails with EINVAL).
#[derive(Debug)]
struct StatusPipe {
    file: File,
    buf: Vec<u8>,
}

enum StatusLine {
    Line(String),
    TimedOut,
    Closed,
}

impl StatusPipe {
    fn read_line(&mut self, deadline: Instant) -> StatusLine {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return StatusLine::Line(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return StatusLine::TimedOut;
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return StatusLine::Closed,
            }
            let mut chunk = [0u8; 1024];
            match self.file.read(&mut chunk) {
                Ok(0) => return StatusLine::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return StatusLine::Closed,
            }
        }
    }
}

/// `N RC [LINE:CODE ...]`
fn parse_status(line: &str, outcome: &mut StepOutcome) {
    let mut words = line.split_whitespace().skip(1);
    outcome.exit_code = words.next().and_then(|w| w.parse().ok());
    for w in words {
        if let Some((l, c)) = w.split_once(':')
            && let (Ok(line), Ok(code)) = (l.parse(), c.parse())
        {
            outcome.failed.push(FailedCommand { line, code });
        }
    }
}

/// Passes on what `path` gained since `pos`.
fn tail(path: &Path, pos: &mut u64, name: &str, f: &mut OutputSink<'_>) {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return;
    };
    if file.seek(SeekFrom::Start(*pos)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
        *pos += buf.len() as u64;
        f(name, &buf);
    }
}

fn read_limited(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(path) {
        let _ = f.take(OUTPUT_LIMIT as u64 + 1).read_to_end(&mut buf);
    }
    let truncated = buf.len() > OUTPUT_LIMIT;
    buf.truncate(OUTPUT_LIMIT);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        s.push_str("\n[output truncated by labgrade]\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_carry_exit_code_and_failed_commands() {
        let mut o = StepOutcome::default();
        parse_status("3 0 2:1 4:2", &mut o);
        assert_eq!(o.exit_code, Some(0));
        assert_eq!(
            o.failed,
            vec![
                FailedCommand { line: 2, code: 1 },
                FailedCommand { line: 4, code: 2 }
            ]
        );
        assert!(!o.succeeded());
        let mut ok = StepOutcome::default();
        parse_status("1 0", &mut ok);
        assert!(ok.succeeded());
    }
}
