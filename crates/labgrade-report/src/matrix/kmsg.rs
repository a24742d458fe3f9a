//! Kernel messages made comparable across guests.

/// `loop3` -> `loopN` and filesystem UUIDs -> `<uuid>`: which loop device a lab got, and the
/// UUID mkfs chose, are not kernel differences.
pub(super) fn normalise_kmsg(m: &str) -> String {
    redact_uuids(&normalise_loop(m))
}

fn redact_uuids(m: &str) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    m.split(' ')
        .map(|word| {
            let groups: Vec<&str> = word.split('-').collect();
            let is_uuid = groups.len() == 5
                && groups
                    .iter()
                    .zip(SHAPE)
                    .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
            if is_uuid { "<uuid>" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalise_loop(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    let mut rest = m;
    while let Some(at) = rest.find("loop") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::normalise_kmsg;

    #[test]
    fn loop_numbers_and_uuids_are_not_kernel_differences() {
        assert_eq!(
            normalise_kmsg(
                "XFS (loop7): Mounting V5 Filesystem 47b77223-0a21-4368-b8a1-8090a46fd435"
            ),
            "XFS (loopN): Mounting V5 Filesystem <uuid>"
        );
    }
}
