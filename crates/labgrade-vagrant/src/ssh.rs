//! The SSH side of a Vagrant machine: `vagrant ssh-config` turned into an OpenSSH config of our
//! own with one multiplexed master connection, so each command costs a channel on an open
//! connection instead of the seconds `vagrant ssh` spends starting Ruby and a new SSH session.

use std::path::Path;

/// The host alias every command uses in the config labgrade writes.
pub const HOST_ALIAS: &str = "labgrade";

/// Why `vagrant ssh-config` could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SshConfigError {
    /// No `HostName` line: the machine has no address yet (it did not get a DHCP lease).
    #[error(
        "`vagrant ssh-config` named no HostName (did the box get an address on the libvirt network?)"
    )]
    NoHostName,
}

/// Turns `vagrant ssh-config` output into a config for [`HOST_ALIAS`]: every detail Vagrant
/// gives (address, port, user, key, host key options) kept, the `Host` line renamed, and the
/// multiplexing and liveness options added. `control_path` is the master's socket.
pub fn labgrade_ssh_config(
    vagrant_output: &str,
    control_path: &Path,
) -> Result<String, SshConfigError> {
    let mut out = format!("Host {HOST_ALIAS}\n");
    let mut has_host_name = false;
    let mut in_first_host = false;
    for line in vagrant_output.lines() {
        let trimmed = line.trim();
        let key = trimmed.split_whitespace().next().unwrap_or_default();
        if key.eq_ignore_ascii_case("host") {
            if in_first_host {
                // Only the first machine of a multi-machine Vagrantfile.
                break;
            }
            in_first_host = true;
            continue;
        }
        if trimmed.is_empty() || !in_first_host {
            continue;
        }
        if key.eq_ignore_ascii_case("hostname") {
            has_host_name = true;
        }
        // Ours below replace Vagrant's where both set them.
        if ["controlmaster", "controlpath", "controlpersist", "loglevel"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
        {
            continue;
        }
        out.push_str("  ");
        out.push_str(trimmed);
        out.push('\n');
    }
    if !has_host_name {
        return Err(SshConfigError::NoHostName);
    }
    out.push_str(&format!(
        "  ControlMaster auto\n  ControlPath {}\n  ControlPersist 600\n  BatchMode yes\n  \
         ConnectTimeout 10\n  ServerAliveInterval 5\n  ServerAliveCountMax 3\n  LogLevel ERROR\n",
        control_path.display()
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAGRANT: &str = "Host default\n  HostName 192.168.121.57\n  User vagrant\n  Port 22\n  \
        UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  PasswordAuthentication no\n  \
        IdentityFile /root/.vagrant.d/insecure_private_key\n  IdentitiesOnly yes\n  LogLevel FATAL\n  \
        PubkeyAcceptedKeyTypes +ssh-rsa\n  HostKeyAlgorithms +ssh-rsa\n\n";

    #[test]
    fn vagrant_details_are_kept_and_multiplexing_added() -> Result<(), SshConfigError> {
        let config = labgrade_ssh_config(VAGRANT, Path::new("/w/ssh.sock"))?;
        assert!(config.starts_with("Host labgrade\n"), "{config}");
        for kept in [
            "HostName 192.168.121.57",
            "User vagrant",
            "Port 22",
            "IdentityFile /root/.vagrant.d/insecure_private_key",
            "StrictHostKeyChecking no",
            "ControlMaster auto",
            "ControlPath /w/ssh.sock",
            "ControlPersist 600",
        ] {
            assert!(config.contains(kept), "{kept} missing from\n{config}");
        }
        assert!(!config.contains("FATAL"), "{config}");
        assert!(!config.contains("default"), "{config}");
        Ok(())
    }

    #[test]
    fn no_address_is_an_error_and_only_the_first_host_counts() {
        assert_eq!(
            labgrade_ssh_config("Host default\n  User vagrant\n", Path::new("/s")),
            Err(SshConfigError::NoHostName)
        );
        let two = format!("{VAGRANT}Host other\n  HostName 10.0.0.9\n");
        let config = labgrade_ssh_config(&two, Path::new("/s")).unwrap_or_default();
        assert!(!config.contains("10.0.0.9"), "{config}");
    }
}
