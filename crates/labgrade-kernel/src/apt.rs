//! A private apt, one per suite, under the cache root: its own sources.list, lists and cache, and
//! its own configuration file (`APT_CONFIG`) so the machine's `apt.conf.d` hooks (appstream,
//! packagekit, docker-clean) and extra index targets never run. The machine's apt state is
//! neither read nor written; only its network settings (`Acquire::*`: proxies, validity checks)
//! are carried over, so a fetch reaches the archive the way the machine's own apt would.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::KernelError;

/// Debian's archive keyring (package `debian-archive-keyring`).
pub(crate) const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt for one suite of one mirror.
#[derive(Debug)]
pub(crate) struct Apt {
    dir: PathBuf,
    conf: PathBuf,
    /// The suite its sources.list names.
    pub(crate) suite: String,
    /// The mirror its sources.list names.
    pub(crate) mirror: String,
}

impl Apt {
    /// Lays out `<state_root>/<suite>` (sources.list, apt.conf, lists, cache). No network.
    pub(crate) fn prepare(
        state_root: &Path,
        mirror: &str,
        suite: &str,
    ) -> Result<Apt, KernelError> {
        if !Path::new(KEYRING).is_file() {
            return Err(KernelError::Io {
                doing: "verify the archive with (apt-get install debian-archive-keyring)".into(),
                path: KEYRING.into(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let dir = state_root.join(suite);
        for sub in ["lists/partial", "cache/archives/partial", "parts"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(KernelError::io("create", &d))?;
        }
        let apt = Apt {
            conf: dir.join("apt.conf"),
            dir,
            suite: suite.to_owned(),
            mirror: mirror.to_owned(),
        };
        let sources = apt.dir.join("sources.list");
        let line = format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n");
        std::fs::write(&sources, line).map_err(KernelError::io("write", &sources))?;
        let mut conf = String::from(
            "// Written by labgrade: a private apt for fetching kernels. The machine's apt.conf.d\n\
             // is not read; its Acquire settings are copied below.\n",
        );
        for (key, value) in apt.options() {
            let _ = writeln!(conf, "{key} \"{value}\";");
        }
        conf.push_str("Acquire::Languages \"none\";\nAPT::Sandbox::User \"root\";\n");
        conf.push_str(&acquire_settings(&machine_config()));
        std::fs::write(&apt.conf, conf).map_err(KernelError::io("write", &apt.conf))?;
        Ok(apt)
    }

    /// The settings that make this apt private; also passed as `-o` so they win over anything.
    fn options(&self) -> Vec<(&'static str, String)> {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        vec![
            ("Dir::Etc::sourcelist", d("sources.list")),
            ("Dir::Etc::sourceparts", "-".into()),
            ("Dir::Etc::parts", d("parts")),
            ("Dir::Etc::main", d("parts/none")),
            ("Dir::Etc::preferences", d("parts/none")),
            ("Dir::Etc::preferencesparts", d("parts")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", "/dev/null".into()),
            ("Dir::Cache", d("cache")),
            // apt-cache would keep a second 50 MB copy of the package cache for sources.
            ("Dir::Cache::srcpkgcache", String::new()),
            ("APT::Architecture", "amd64".into()),
            ("Debug::NoLocking", "1".into()),
        ]
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.conf);
        for (key, value) in self.options() {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd
    }

    /// Downloads the suite's package lists (a few seconds, a few MB).
    pub(crate) fn update(&self) -> Result<(), KernelError> {
        let mut cmd = self.command("apt-get");
        // Without --error-on=any an unreachable mirror is only a warning (exit 0).
        cmd.args(["-q", "--error-on=any", "update"]);
        let out = spawn(&mut cmd)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("does not have a Release file") {
            return Err(KernelError::NotInArchive {
                what: "a Release file".into(),
                suite: self.suite.clone(),
                mirror: self.mirror.clone(),
                hint: format!(
                    "is the suite name right (bullseye, bookworm, trixie, sid, \
                     bookworm-backports, ...)? apt said:\n{}",
                    stderr.trim()
                ),
            });
        }
        check(
            &cmd,
            out,
            &format!(
                "downloading the package lists of {} from {}",
                self.suite, self.mirror
            ),
            &format!(
                "check that the suite `{}` exists on {} and that the mirror is reachable; \
                 --mirror URI picks another mirror",
                self.suite, self.mirror
            ),
        )?;
        Ok(())
    }

    /// `apt-cache show SPEC` (`name` or `name=version`): the control text, or `None` if the suite
    /// has no such package or version.
    pub(crate) fn show(&self, spec: &str) -> Result<Option<String>, KernelError> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", spec]);
        let out = spawn(&mut cmd)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            if stderr.contains("No packages found") || stderr.contains("Unable to locate") {
                return Ok(None);
            }
            return Err(failed(
                &cmd,
                &format!("reading {spec} from the {} package lists", self.suite),
                &out,
                "the private package lists may be damaged: delete the directory named in the \
                 command and fetch again",
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((!text.trim().is_empty()).then_some(text))
    }

    /// `apt-get download NAME=VERSION...` into `into`.
    pub(crate) fn download(&self, specs: &[String], into: &Path) -> Result<(), KernelError> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "download"]).args(specs).current_dir(into);
        run(
            &mut cmd,
            &format!("downloading {} from {}", specs.join(" "), self.mirror),
            "check the network and the free space under the kernel cache; fetching again \
             is safe",
        )?;
        Ok(())
    }

    /// Drops the binary package cache (about 50 MB a suite); the lists stay for the next
    /// update, which rebuilds it anyway.
    pub(crate) fn tidy(&self) {
        for name in ["pkgcache.bin", "srcpkgcache.bin"] {
            let _ = std::fs::remove_file(self.dir.join("cache").join(name));
        }
    }
}

/// `apt-config dump` of the machine's own configuration (no network); empty if that fails.
fn machine_config() -> String {
    let mut cmd = Command::new("apt-config");
    cmd.arg("dump");
    match spawn(&mut cmd) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr), "apt-config dump failed");
            String::new()
        }
        Err(e) => {
            tracing::debug!(error = %e, "apt-config dump failed");
            String::new()
        }
    }
}

/// The network settings of an `apt-config dump`: `Acquire::*` lines, except index targets
/// (the machine may fetch appstream data, labgrade needs only Packages) and languages.
pub(crate) fn acquire_settings(dump: &str) -> String {
    let mut out = String::new();
    for line in dump.lines() {
        let keep = line.starts_with("Acquire::")
            && !line.starts_with("Acquire::IndexTargets")
            && !line.starts_with("Acquire::Languages")
            && line.ends_with("\";")
            && line.matches('"').count() == 2;
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn package_of(program: &OsStr) -> &'static str {
    match program.to_str() {
        Some("dpkg-deb") => "dpkg",
        _ => "apt",
    }
}

fn spawn(cmd: &mut Command) -> Result<std::process::Output, KernelError> {
    tracing::debug!(command = %describe(cmd), "running");
    cmd.output().map_err(|source| KernelError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        package: package_of(cmd.get_program()).to_owned(),
        source,
    })
}

/// Runs `cmd`; its stdout on success, else an error with its stderr, `doing` and `hint`.
pub(crate) fn run(cmd: &mut Command, doing: &str, hint: &str) -> Result<String, KernelError> {
    let out = spawn(cmd)?;
    check(cmd, out, doing, hint)
}

fn check(
    cmd: &Command,
    out: std::process::Output,
    doing: &str,
    hint: &str,
) -> Result<String, KernelError> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(failed(cmd, doing, &out, hint))
}

fn failed(cmd: &Command, doing: &str, out: &std::process::Output, hint: &str) -> KernelError {
    KernelError::Command {
        command: describe(cmd),
        doing: doing.to_owned(),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        hint: hint.to_owned(),
    }
}

/// The command as a shell line (environment settings first), for errors and debug logs.
fn describe(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    if let Some(dir) = cmd.get_current_dir() {
        words.insert(0, format!("cd {} &&", dir.display()));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_settings_are_carried_over() {
        let dump = "\
APT::Architecture \"amd64\";
Acquire::Check-Valid-Until \"false\";
Acquire::http::Proxy \"http://proxy.example:3128\";
Acquire::IndexTargets::deb::DEP-11 \"\";
Acquire::IndexTargets::deb::DEP-11::MetaKey \"main/dep11/Components-amd64.yml\";
Acquire::Languages:: \"none\";
APT::Update::Post-Invoke-Success:: \"appstreamcli refresh\";
Acquire::Weird \"a\"b\";
";
        assert_eq!(
            acquire_settings(dump),
            "Acquire::Check-Valid-Until \"false\";\n\
             Acquire::http::Proxy \"http://proxy.example:3128\";\n"
        );
    }

    #[test]
    fn commands_are_described_for_copy_and_paste() {
        let mut cmd = Command::new("apt-get");
        cmd.env("APT_CONFIG", "/c/apt.conf")
            .args(["download", "x=1"])
            .current_dir("/tmp");
        assert_eq!(
            describe(&cmd),
            "cd /tmp && APT_CONFIG=/c/apt.conf apt-get download x=1"
        );
    }
}
