//! The Vagrantfile labgrade writes into each machine's working directory.

use std::path::PathBuf;

/// What a `vagrant:NAME` guest brings up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxSource {
    /// A directory under `vagrant/` whose Vagrantfile names the box and provisions it
    /// (`vagrant/ubuntu-22.04/Vagrantfile`): loaded first, labgrade's settings on top.
    Vagrantfile(PathBuf),
    /// A box Vagrant already has, by name (`labgrade/bookworm`, `generic/ubuntu2204`).
    Box(String),
}

/// The working directory's Vagrantfile: the source's settings, then labgrade's own — the
/// libvirt provider under QEMU's TCG (`driver = "qemu"`: KVM here cannot run stock kernels), the
/// libvirt domain named `<domain_prefix>default` so a reaper can find exactly this machine, no
/// synced folder (labgrade copies what it needs over SSH) and no key swap (it costs a login).
pub fn vagrantfile(source: &BoxSource, domain_prefix: &str) -> String {
    let (load, box_line) = match source {
        BoxSource::Vagrantfile(path) => (
            format!(
                "load {}\n",
                ruby_string(&path.join("Vagrantfile").display().to_string())
            ),
            String::new(),
        ),
        BoxSource::Box(name) => (
            String::new(),
            format!("  config.vm.box = {}\n", ruby_string(name)),
        ),
    };
    format!(
        "# Written by labgrade for one machine; it destroys it (and this directory) when done.\n\
         {load}Vagrant.configure(\"2\") do |config|\n\
         {box_line}  config.ssh.insert_key = false\n  \
         config.vm.synced_folder \".\", \"/vagrant\", disabled: true\n  \
         config.vm.provider :libvirt do |lv|\n    \
         lv.driver = \"qemu\"\n    \
         lv.default_prefix = {}\n  \
         end\n\
         end\n",
        ruby_string(domain_prefix)
    )
}

/// The libvirt domain vagrant-libvirt makes for the machine `default` with this prefix.
pub fn domain_name(domain_prefix: &str) -> String {
    format!("{domain_prefix}default")
}

fn ruby_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_name_is_named_and_a_directory_is_loaded() {
        let named = vagrantfile(&BoxSource::Box("labgrade/bookworm".into()), "lg-1_");
        assert!(
            named.contains("config.vm.box = 'labgrade/bookworm'"),
            "{named}"
        );
        assert!(named.contains("lv.default_prefix = 'lg-1_'"), "{named}");
        assert!(named.contains("lv.driver = \"qemu\""), "{named}");
        assert!(!named.contains("load "), "{named}");
        let dir = vagrantfile(&BoxSource::Vagrantfile("/src/vagrant/rhel-9".into()), "p_");
        assert!(dir.starts_with("# Written"), "{dir}");
        assert!(
            dir.contains("load '/src/vagrant/rhel-9/Vagrantfile'\n"),
            "{dir}"
        );
        assert!(!dir.contains("config.vm.box"), "{dir}");
        assert_eq!(domain_name("p_"), "p_default");
    }

    #[test]
    fn quotes_cannot_break_out_of_the_ruby_string() {
        assert_eq!(ruby_string(r"a'b\"), r"'a\'b\\'");
    }
}
