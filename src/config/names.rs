//! The one rule for names that become file or folder names.
//!
//! Job, office, source, survey and template names end up in paths
//! (`data/reports/<job>/…`, `data/outbox/<job>_<period>_<office>.eml`,
//! `data/landing/<source>/…`, `survey-templates/<survey>/`). A job file that
//! said `name = "../../../escape"` made `manyi run` write reports and mail
//! outside the data directory, so every such name is checked here, once, by
//! the same rule: ASCII letters, digits, `-` and `_`, starting with a letter
//! or digit, at most [`MAX_LEN`] characters. Nothing else (no `/`, `\`, `.`,
//! spaces, control characters or non-ASCII) can reach a path.

/// The longest accepted name (file names stay well under any limit).
pub const MAX_LEN: usize = 64;

/// `Ok` when `name` is a plain name; otherwise the message for the clerk,
/// saying what the name is used for (`what`, e.g. "job name").
pub fn check_plain_name(what: &str, name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= MAX_LEN
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        return Ok(());
    }
    let shown: String = name.chars().take(80).flat_map(char::escape_debug).collect();
    Err(format!(
        "{what} “{shown}” must be a plain name: ASCII letters, digits, - or _, starting with a letter or digit, \
         at most {MAX_LEN} characters (it names files and folders)"
    ))
}

#[cfg(test)]
mod tests {
    use super::check_plain_name;

    #[test]
    fn only_plain_names_pass() {
        for ok in ["monthly-report", "street-369901001", "hcp_2", "a"] {
            assert!(check_plain_name("job name", ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(65);
        for bad in
            ["", "/tmp/escape_abs", "../../../escape_rel", "a/b", "a\\b", "..", ".hidden", "-flag", "名字", "a b", "a\u{0}b", "a.b", &long]
        {
            let e = check_plain_name("job name", bad).expect_err(bad);
            assert!(e.starts_with("job name “") && e.contains("plain name"), "{e}");
        }
    }
}
