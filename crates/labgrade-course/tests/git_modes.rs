//! In a git work tree a clone gets the index's modes, not the checkout's: a script that is 755
//! on disk but committed 644 fails `./x.sh` for every student. Also the repository root comes
//! from git, and the whole repository is judged (links leaving PATH included).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use labgrade_course::{ExecBitsFrom, RepoRootFrom, StaticOptions, Tools, check_course};

fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write(root: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text)
}

#[test]
fn exec_bits_come_from_the_git_index() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path();
    if !git(repo, &["init", "-q"]) {
        eprintln!("git is not usable here: test not run");
        return Ok(());
    }
    let lesson = "course/m1/01-a";
    write(
        repo,
        &format!("{lesson}/README.md"),
        "# A\n\n```bash\ncd ~/cloud-atlas/course/m1/01-a/code\nsudo ./run.sh\n./ok.sh\n```\n\n[gone](../../../elsewhere/)\n",
    )?;
    write(
        repo,
        &format!("{lesson}/code/run.sh"),
        "#!/bin/bash\necho run\n",
    )?;
    write(
        repo,
        &format!("{lesson}/code/ok.sh"),
        "#!/bin/bash\necho ok\n",
    )?;
    for s in ["run.sh", "ok.sh"] {
        let p = repo.join(lesson).join("code").join(s);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    assert!(git(repo, &["add", "."]));
    // On disk both are 755; the index says run.sh is not executable.
    assert!(git(
        repo,
        &[
            "update-index",
            "--chmod=-x",
            &format!("{lesson}/code/run.sh")
        ]
    ));
    assert!(git(repo, &["commit", "-q", "-m", "x"]));

    let options = StaticOptions {
        clone_path: labgrade_course::DEFAULT_CLONE_PATH.into(),
        repo_root: None,
        labs: Err("no labs in this test".into()),
        tools: Tools::find(None),
    };
    let report = check_course(&repo.join("course"), &options)?;
    assert_eq!(report.exec_bits_from, ExecBitsFrom::GitIndex);
    assert_eq!(report.repo_root_from, RepoRootFrom::Git);
    let found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.file.as_str(), f.line, f.kind.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("m1/01-a/README.md", 5, "script_not_executable"),
            // The whole repository is here: a link out of PATH is judged too.
            ("m1/01-a/README.md", 9, "broken_link"),
        ]
    );
    assert_eq!(report.coverage.outside_unjudged, 0);
    Ok(())
}
