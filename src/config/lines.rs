//! Exact lines of keys in a TOML file, for problems found after serde has
//! read it (a value that parses but is wrong: an empty `app_key`, an unknown
//! office). The file is parsed a second time into toml's spanned document,
//! where every key and value is a `toml::Spanned`, so the second `[[source]]`
//! is told apart from the first, which a text search cannot do.

use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into a TOML document: a key of a table or an element
/// of an array (an array of tables such as `[[source]]` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step<'k> {
    /// A key of a table.
    Key(&'k str),
    /// An element of an array, from 0.
    Index(usize),
}

/// A TOML text with the spans of its keys and values.
pub(crate) struct TomlLines<'a> {
    text: &'a str,
    // None when the text does not parse; serde has reported that already.
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> TomlLines<'a> {
    /// Parses `text` for its spans.
    pub(crate) fn new(text: &'a str) -> Self {
        TomlLines { text, root: DeTable::parse(text).ok() }
    }

    /// The 1-based line of `path`: the line of its key (an element's: its
    /// `[[header]]` or its value). A path that is only partly present (a key
    /// left to its default) gives the line of the deepest step that is, so a
    /// missing `inbox` points at its `[[source]]`; `None` when not even the
    /// first step is in the file.
    pub(crate) fn line(&self, path: &[Step<'_>]) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut found: Option<Range<usize>> = None;
        let mut current: Option<&DeValue<'a>> = None;
        for step in path {
            let next = match *step {
                Step::Key(key) => {
                    let table = match current {
                        None => Some(root.get_ref()),
                        Some(value) => value.as_table(),
                    };
                    table.and_then(|t| t.get_key_value(key)).map(|(k, v)| (k.span(), v))
                }
                Step::Index(i) => current.and_then(DeValue::as_array).and_then(|a| a.get(i)).map(|v| (v.span(), v)),
            };
            let Some((span, value)) = next else { break };
            found = Some(span);
            current = Some(value.get_ref());
        }
        found.map(|span| line_at(self.text, span.start))
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::Step::{Index as I, Key as K};
    use super::*;

    const TEXT: &str = "organisation = \"x\"\n\n[[source]]\nname = \"a\"\n[source.api]\napp_key = \"\"\n\n[[source]]\nname = \"b\"\n\
                        [source.api]\napp_key = \"\"\n[source.columns]\n\"rated.at\" = \"评价时间\"\n";

    #[test]
    fn keys_of_the_second_array_element_are_found_on_their_own_lines() {
        let lines = TomlLines::new(TEXT);
        assert_eq!(lines.line(&[K("organisation")]), Some(1));
        assert_eq!(lines.line(&[K("source"), I(0), K("api"), K("app_key")]), Some(6));
        assert_eq!(lines.line(&[K("source"), I(1), K("api"), K("app_key")]), Some(11));
        assert_eq!(lines.line(&[K("source"), I(1), K("columns"), K("rated.at")]), Some(13));
    }

    #[test]
    fn a_missing_key_points_at_the_deepest_part_that_is_there() {
        let lines = TomlLines::new(TEXT);
        assert_eq!(lines.line(&[K("source"), I(1), K("inbox")]), Some(8));
        assert_eq!(lines.line(&[K("source"), I(1), K("api"), K("vid")]), Some(10));
        assert_eq!(lines.line(&[K("mail"), K("from")]), None);
        assert_eq!(TomlLines::new("not toml [").line(&[K("a")]), None);
    }
}
