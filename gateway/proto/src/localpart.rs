//! The localparts of the server's own accounts.

use jid::NodePart;

/// `raw` nodeprepped (RFC 7622 §3.3) as an account's name, or `None` if it is no valid
/// localpart or is one whose normalized form normalizes to something else again.
///
/// Stringprep's tables are Unicode 3.2's, and the jid crate does not refuse characters
/// assigned since: case folding leaves `Ϲ` (U+03F9) alone and NFKC then turns it into `Σ`,
/// so `Ϲbob` normalizes to `Σbob`, and that to `σbob`. An account stored as `Σbob` would
/// bind, and be sent stanzas, as `σbob@…`, someone else's address.
pub fn normalize(raw: &str) -> Option<String> {
    let once = NodePart::new(raw).ok()?;
    let twice = NodePart::new(once.as_str()).ok()?;
    (once.as_str() == twice.as_str()).then(|| once.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_folded_and_prepared() {
        assert_eq!(normalize("Juliet").as_deref(), Some("juliet"));
        assert_eq!(normalize("\u{2126}mega").as_deref(), Some("\u{3c9}mega"));
        assert_eq!(normalize("r\u{e9}sum\u{e9}").as_deref(), Some("r\u{e9}sum\u{e9}"));
        for invalid in ["", "a@b", "a/b", "a b", "a\"b"] {
            assert_eq!(normalize(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn a_name_that_is_no_fixed_point_is_refused() {
        // Found by fuzzing: `Ϲbob` prepared to `Σbob`, which prepares to `σbob`.
        assert_eq!(NodePart::new("\u{3f9}bob").unwrap().as_str(), "\u{3a3}bob");
        assert_eq!(normalize("\u{3f9}bob"), None);
        assert_eq!(normalize("\u{3a3}bob").as_deref(), Some("\u{3c3}bob"));
    }
}
