//! XML rules the event parser leaves to its caller: names, characters, the
//! declaration, attribute separation, duplicates.

use super::*;

/// Whether `items` holds two equal elements (sorts it when it is long).
pub(super) fn has_duplicate<T: Ord>(items: &mut [T]) -> bool {
    if items.len() <= 16 {
        return (1..items.len()).any(|j| (0..j).any(|k| items[j] == items[k]));
    }
    items.sort_unstable();
    items.windows(2).any(|w| w[0] == w[1])
}

/// The bytes of an event as the parser saw them (without its delimiters).
pub(super) fn raw_bytes<'a>(event: &'a Event<'_>) -> &'a [u8] {
    match event {
        Event::Start(e) | Event::Empty(e) => e.as_bytes(),
        Event::End(e) => e.as_bytes(),
        Event::Text(e) | Event::Comment(e) | Event::DocType(e) => e.as_bytes(),
        Event::CData(e) => e.as_bytes(),
        Event::Decl(e) => e.as_bytes(),
        Event::PI(e) => e.as_bytes(),
        Event::GeneralRef(e) => e.as_bytes(),
        Event::Eof => &[],
    }
}

/// The XMLDecl production: `xml`, then `version`, optional `encoding` and
/// optional `standalone`, in that order, each quoted.
pub(super) fn is_valid_declaration(decl: &str) -> bool {
    let Some(mut rest) = decl.strip_prefix("xml") else {
        return false;
    };
    let mut seen = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return false; // pseudo-attributes are separated by whitespace
        }
        let Some((name, after)) = trimmed.split_once('=') else {
            return false;
        };
        let after = after.trim_start_matches([' ', '\t', '\r', '\n']);
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return false;
        };
        let Some(end) = after[1..].find(quote) else {
            return false;
        };
        let value = &after[1..1 + end];
        let name = name.trim_end_matches([' ', '\t', '\r', '\n']);
        let valid = match name {
            "version" => {
                seen.is_empty()
                    && value
                        .strip_prefix("1.")
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            }
            "encoding" => {
                seen == ["version"]
                    && value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            }
            "standalone" => {
                !seen.is_empty() && !seen.contains(&"standalone") && matches!(value, "yes" | "no")
            }
            _ => false,
        };
        if !valid {
            return false;
        }
        seen.push(match name {
            "version" => "version",
            "encoding" => "encoding",
            _ => "standalone",
        });
        rest = &after[1 + end + 1..];
    }
    seen.first() == Some(&"version")
}

/// Whether every quoted attribute value is followed by whitespace or the end of
/// the tag (quick-xml accepts `a="1"b="2"`, XML does not).
pub(super) fn attributes_separated(raw: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                if chars
                    .peek()
                    .is_some_and(|n| !n.is_ascii_whitespace() && *n != '/')
                {
                    return false;
                }
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    true
}

/// The NameStartChar production of XML 1.0 (fifth edition), without `:`.
pub(super) fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// The NameChar production of XML 1.0, without `:`.
pub(super) fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A QName of Namespaces in XML: `prefix:local` or `local`, each an NCName.
pub(crate) fn is_xml_name(name: &str) -> bool {
    let ncname = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
    };
    match name.split_once(':') {
        Some((prefix, local)) => ncname(prefix) && ncname(local),
        None => ncname(name),
    }
}

/// The Char production of XML 1.0.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
