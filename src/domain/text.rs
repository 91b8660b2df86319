//! Free text an operator writes (a display name, a pause reason). It is shown in listings
//! and kept in the audit trail, so it is bounded and has no control characters. The
//! patterns the API document states are checked against these functions for every
//! character, so both say the same.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::nullable_type;

/// Control characters (`char::is_control`: U+0000-U+001F and U+007F-U+009F), as a class body.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
/// Control characters and white space (`char::is_whitespace`), as a class body.
const CONTROL_OR_SPACE: &str =
    r"\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// At most `max` characters, none of them a control character.
pub fn is_plain(value: &str, max: usize) -> bool {
    value.chars().count() <= max && !value.chars().any(char::is_control)
}

/// Nothing but white space (or nothing at all).
pub fn is_blank(value: &str) -> bool {
    value.chars().all(char::is_whitespace)
}

/// What [`is_plain`] accepts; with `required`, also not [`is_blank`].
pub fn pattern(required: bool) -> String {
    if required {
        format!("^[^{CONTROL}]*[^{CONTROL_OR_SPACE}][^{CONTROL}]*$")
    } else {
        format!("^[^{CONTROL}]*$")
    }
}

/// The schema of such a text of at most `max` characters; `required` texts may not be blank.
pub fn schema(max: usize, required: bool, nullable: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::String, nullable))
        .min_length(required.then_some(1))
        .max_length(Some(max))
        .pattern(Some(pattern(required)))
        .build()
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    #[test]
    fn the_patterns_accept_exactly_the_characters_the_checks_accept() {
        let plain = Regex::new(&pattern(false)).unwrap();
        let required = Regex::new(&pattern(true)).unwrap();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(plain.is_match(&s), is_plain(&s, 1), "{c:?}");
            assert_eq!(
                required.is_match(&s),
                is_plain(&s, 1) && !is_blank(&s),
                "{c:?}"
            );
        }
        assert!(required.is_match(" New York "));
        assert!(!required.is_match(" \u{3000} "));
        assert!(!plain.is_match("two\nlines"));
        assert!(!plain.is_match("trailing\n"));
    }
}
