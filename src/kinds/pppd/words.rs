//! pppd's word syntax, shared by peer files and chap-secrets: words split on white space,
//! `"` or `'` quote, a backslash escapes, `#` at the start of a word begins a comment.
//!
//! [`quote`] and [`split`] are inverses for every string without control characters: that is
//! what lets a secret with quotes, backslashes or spaces survive a write and a re-read.

/// A line that pppd would not read as whole words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote opened and never closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
}

/// Splits one line into words the way pppd's option and secrets readers do.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|&c| is_space(c)) {
            chars.next();
        }
        match chars.peek() {
            None => return Ok(words),
            Some('#') => return Ok(words),
            _ => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && is_space(c) {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.next() {
                    Some(e) => word.push(unescape(e, &mut chars)),
                    None => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                q if quote == Some(q) => quote = None,
                _ => word.push(c),
            }
        }
        if quote.is_some() {
            return Err(SplitError::UnterminatedQuote);
        }
        words.push(word);
    }
}

/// White space as C's `isspace` sees it (what pppd splits on): not Unicode's, so a no-break
/// space stays inside a word.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn unescape(e: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match e {
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        's' => ' ',
        't' => '\t',
        '0'..='7' => {
            let mut v = e.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match rest.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        rest.next();
                    }
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('?')
        }
        other => other,
    }
}

/// Writes a word so that [`split`] (and pppd) reads it back unchanged: bare when it is plain,
/// else in double quotes with `\` and `"` escaped.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && !word.starts_with('#')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@:/+,=*-%".contains(c));
    if plain {
        word.to_string()
    } else {
        quote_always(word)
    }
}

/// Writes a word in double quotes, escaped: the chap-secrets field lesson says quote every field.
pub fn quote_always(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_quotes_escapes_and_comments() {
        assert_eq!(
            split(r#""admin" "node 2" "s\"3\\t" * # note"#).unwrap(),
            vec!["admin", "node 2", r#"s"3\t"#, "*"]
        );
        assert_eq!(split("a'b c'd e").unwrap(), vec!["ab cd", "e"]);
        assert_eq!(split(r"a\sb \101").unwrap(), vec!["a b", "A"]);
        assert_eq!(split("  # all comment").unwrap(), Vec::<String>::new());
        assert_eq!(split("\"open"), Err(SplitError::UnterminatedQuote));
        // A no-break space is not white space to pppd.
        assert_eq!(split("clave\u{a0}x *").unwrap(), vec!["clave\u{a0}x", "*"]);
    }

    proptest! {
        #[test]
        fn quote_then_split_is_identity(word in "[^\\p{Cc}]{0,40}") {
            prop_assert_eq!(split(&quote_always(&word)).unwrap(), vec![word.clone()]);
            prop_assert_eq!(split(&quote(&word)).unwrap(), vec![word]);
        }
    }
}
