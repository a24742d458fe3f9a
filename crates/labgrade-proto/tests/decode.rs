//! The agent's line decoder reads bytes a guest sends (and a guest runs untrusted code): no input
//! may panic it, and everything it encodes it reads back unchanged.

use labgrade_proto::{Request, Response, StepOutcome};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_line_decodes_or_errs_without_panicking(line in "\\PC*") {
        let _ = serde_json::from_str::<Request>(&line);
        let _ = serde_json::from_str::<Response>(&line);
    }

    #[test]
    fn json_shaped_garbage_decodes_or_errs(
        op in prop::sample::select(vec!["run", "probe", "inspect", "snapshot", "attach", "shutdown", "ran", "hello", "bye"]),
        key in "[a-z_]{0,12}",
        value in prop_oneof![Just("null".to_owned()), "-?[0-9]{1,30}", "\"\\PC{0,20}\"", Just("[]".to_owned()), Just("{}".to_owned())],
    ) {
        for tag in ["op", "reply"] {
            let line = format!("{{\"{tag}\":\"{op}\",\"{key}\":{value}}}");
            let _ = serde_json::from_str::<Request>(&line);
            let _ = serde_json::from_str::<Response>(&line);
        }
    }

    #[test]
    fn a_step_outcome_round_trips(
        exit_code in proptest::option::of(any::<i32>()),
        stdout in "\\PC{0,64}",
        stderr in "\\PC{0,64}",
        timed_out in any::<bool>(),
        duration_ms in any::<u64>(),
    ) {
        let o = StepOutcome { exit_code, stdout, stderr, timed_out, duration_ms, ..StepOutcome::default() };
        let line = serde_json::to_string(&Response::Ran(o.clone())).unwrap_or_default();
        match serde_json::from_str::<Response>(&line) {
            Ok(Response::Ran(back)) => prop_assert_eq!(back, o),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
