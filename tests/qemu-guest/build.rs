//! cfgs for what this machine can do (labgrade-test-machine): tests that cannot run here are
//! compiled ignored, with their reason.

fn main() {
    labgrade_test_machine::emit();
}
