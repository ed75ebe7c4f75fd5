//! Bytes at a time: names found eight bytes per step (SWAR), markup and
//! references located with memchr, attribute values normalized, characters checked.

use super::*;

/// An attribute of the tag being parsed, as ranges of the read buffer.
pub(super) struct Attribute {
    pub(super) name: Range<usize>,
    /// Index of the `:` in the name (names of ASCII bytes).
    pub(super) colon: Option<usize>,
    pub(super) value: Range<usize>,
}

/// A name found by [`find_name_end`].
#[derive(Clone, Copy)]
pub(super) struct Name {
    /// Index of the first byte after the name.
    pub(super) end: usize,
    /// Made of ASCII name bytes only; then `colon` and `colons` describe it.
    pub(super) ascii: bool,
    /// Index of its first `:`.
    pub(super) colon: Option<usize>,
    pub(super) colons: u32,
}

impl Name {
    /// Whether the name (`name`, the bytes it spans) is a QName.
    #[inline]
    pub(super) fn is_qname(&self, name: &[u8]) -> bool {
        if !self.ascii {
            return is_qname(name);
        }
        let start = self.end - name.len();
        self.colons <= 1
            && starts_ncname(name)
            && self
                .colon
                .is_none_or(|colon| starts_ncname(&name[colon - start + 1..]))
    }
}

/// Where the name starting at `from` ends: the first byte that cannot be part
/// of it. `None` if the bytes up to `limit` are all name bytes.
#[inline(always)]
pub(super) fn find_name_end(buf: &[u8], from: usize, limit: usize) -> Option<Name> {
    let bytes = &buf[..limit];
    let mut i = from;
    let mut colon = None;
    let mut colons = 0;
    // Eight bytes at a time: no branch per byte, names are short.
    let mut stopped = false;
    while let Some(word) = word_at(bytes, i) {
        let (stops, colon_bytes) = classify_name_bytes(word);
        let inside = match stops {
            0 => colon_bytes,
            _ => colon_bytes & ((1u64 << stops.trailing_zeros()) - 1),
        };
        if inside != 0 {
            colon.get_or_insert(i + inside.trailing_zeros() as usize / 8);
            colons += inside.count_ones();
        }
        if stops != 0 {
            i += stops.trailing_zeros() as usize / 8;
            stopped = true;
            break;
        }
        i += 8;
    }
    if !stopped {
        while i < limit && ASCII_NAME[buf[i] as usize] {
            if buf[i] == b':' {
                colon.get_or_insert(i);
                colons += 1;
            }
            i += 1;
        }
    }
    let ascii = i >= limit || buf[i] < 0x80;
    if !ascii {
        // A non-ASCII name: up to the delimiters, checked by `is_qname`.
        while i < limit && !is_space(buf[i]) && !matches!(buf[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        colon = find(b':', &buf[from..i]).map(|c| from + c);
    }
    (i < limit).then_some(Name {
        end: i,
        ascii,
        colon,
        colons,
    })
}

// Byte classification eight bytes at a time in a `u64` ("SWAR"): each function
// returns a word with the high bit set in the bytes it selects.
pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `at`, little-endian, if there are eight.
#[inline(always)]
pub(super) fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let eight = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(eight.try_into().ok()?))
}

/// The bytes of `word` equal to `b`. Exact for the lowest selected byte only
/// (a borrow can mark bytes above it), which is all a search needs.
#[inline(always)]
pub(super) fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The bytes that are not ASCII name bytes ([`ASCII_NAME`]), and the colons.
/// Exact for every byte (colons: for every byte before the first non-name byte).
#[inline(always)]
pub(super) fn classify_name_bytes(word: u64) -> (u64, u64) {
    let high = word & HIGHS;
    let low = word & !HIGHS;
    // Bytes of `low` (all below 0x80) that are at least `n`: adding 0x80 - n
    // sets the high bit exactly then, and never carries into the next byte.
    let at_least = |n: u8| low.wrapping_add(ONES * u64::from(0x80 - n)) & HIGHS;
    let between = |from: u8, to: u8| at_least(from) & !at_least(to + 1);
    let colons = between(b':', b':');
    let name = (between(b'-', b'.') | between(b'0', b':'))
        | between(b'A', b'Z')
        | between(b'_', b'_')
        | between(b'a', b'z');
    (high | (!name & HIGHS), colons)
}

/// Whether ASCII name bytes form a QName: NCNames start with a letter or `_`,
/// and at most one `:` separates two of them.
pub(super) fn ascii_qname_shape(name: &[u8]) -> bool {
    match find(b':', name) {
        Some(colon) => {
            let local = &name[colon + 1..];
            starts_ncname(&name[..colon]) && starts_ncname(local) && !local.contains(&b':')
        }
        None => starts_ncname(name),
    }
}

/// Whether ASCII name bytes start the way an NCName must: a letter or `_`.
pub(super) fn starts_ncname(part: &[u8]) -> bool {
    part.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
}

/// The first `b` in a short `haystack` (names, references, attribute values):
/// a plain loop beats `memchr`'s setup there.
pub(super) fn find(b: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&c| c == b)
}

/// The first `<`, `&` or `]` of character data: eight bytes at a time over the
/// first bytes (most text between tags is short), `memchr` beyond.
#[inline]
pub(super) fn find_markup(text: &[u8]) -> Option<usize> {
    const SHORT: usize = 64;
    let mut at = 0;
    while at < SHORT {
        let Some(word) = word_at(text, at) else {
            return text[at..]
                .iter()
                .position(|&b| matches!(b, b'<' | b'&' | b']'))
                .map(|i| at + i);
        };
        let stops = bytes_equal(word, b'<') | bytes_equal(word, b'&') | bytes_equal(word, b']');
        if stops != 0 {
            return Some(at + stops.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr3(b'<', b'&', b']', &text[at..]).map(|i| i + at)
}

/// Whether two short byte strings (names, prefixes) are equal, compared a
/// word at a time rather than through `memcmp`.
#[inline(always)]
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half =
        |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => {
            word(a, 0) == word(b, 0)
                && word(a, 8) == word(b, 8)
                && word(a, n - 16) == word(b, n - 16)
                && word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

/// The length of the reference at the start of `text` if it is one of the
/// common well-formed ones: a predefined entity or a decimal or hexadecimal
/// character reference to a character XML allows. Anything else (including a
/// reference not complete in `text`) is left to [`check_reference`].
#[inline]
pub(super) fn common_reference(text: &[u8]) -> Option<usize> {
    match text.get(1)? {
        b'#' => {
            let (from, radix) = if text.get(2) == Some(&b'x') {
                (3, 16)
            } else {
                (2, 10)
            };
            let mut value: u32 = 0;
            let mut i = from;
            while let Some(digit) = text.get(i).and_then(|&b| char::from(b).to_digit(radix)) {
                value = value.saturating_mul(radix).saturating_add(digit);
                i += 1;
            }
            let valid = i > from
                && text.get(i) == Some(&b';')
                && char::from_u32(value).is_some_and(is_xml_char);
            valid.then_some(i + 1)
        }
        b'a' if text.get(1..5) == Some(b"amp;") => Some(5),
        b'l' if text.get(1..4) == Some(b"lt;") => Some(4),
        b'g' if text.get(1..4) == Some(b"gt;") => Some(4),
        b'q' if text.get(1..6) == Some(b"quot;") => Some(6),
        b'a' if text.get(1..6) == Some(b"apos;") => Some(6),
        _ => None,
    }
}

/// ASCII bytes of a QName: letters, digits, `_`, `-`, `.` and `:`.
pub(super) static ASCII_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        b += 1;
    }
    table
};

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A QName, with an ASCII fast path.
pub(super) fn is_qname(name: &[u8]) -> bool {
    if name.iter().all(|&b| ASCII_NAME[b as usize]) {
        return ascii_qname_shape(name);
    }
    std::str::from_utf8(name).is_ok_and(is_xml_name)
}

/// The name of a reference between `&` and `;`.
pub(super) fn check_reference(name: &[u8]) -> Result<(), String> {
    let text = as_str(name);
    if let Some(number) = text.strip_prefix('#') {
        let value = match number.strip_prefix('x') {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()
            }
            None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                number.parse::<u32>().ok()
            }
            _ => None,
        };
        return match value.and_then(char::from_u32) {
            Some(c) if is_xml_char(c) => Ok(()),
            _ => Err(format!("invalid character reference &{text};")),
        };
    }
    match text {
        "lt" | "gt" | "amp" | "apos" | "quot" => Ok(()),
        _ if is_qname(name) => Err(format!(
            "undefined entity &{text};, entity declarations are refused"
        )),
        _ => Err(format!("invalid reference &{text};")),
    }
}

/// Attribute-value normalization of XML 1.0 for CDATA attributes: references
/// replaced, whitespace characters turned into spaces. References are checked.
pub(super) fn normalize_attribute(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        if rest.as_bytes()[i] != b'&' {
            out.push(' ');
            rest = &rest[i + 1..];
            continue;
        }
        let Some(end) = rest[i..].find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &rest[i + 1..i + end];
        let replacement = match name {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => name.strip_prefix('#').and_then(|n| {
                match n.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                }
                .and_then(char::from_u32)
            }),
        };
        match replacement {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..=i + end]),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The first byte XML 1.0 does not allow: a C0 control other than tab, line
/// feed and carriage return, or the start of U+FFFE or U+FFFF. `bytes` is UTF-8.
pub(crate) fn first_invalid_character(bytes: &[u8]) -> Option<(usize, &'static str)> {
    const CHUNK: usize = 64;
    let control = |b: u8| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r';
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        // Branch-free over the chunk (vectorizes); find the byte only on a hit.
        if chunk.iter().fold(false, |hit, &b| hit | control(b)) {
            let i = chunk.iter().position(|&b| control(b)).unwrap_or(0);
            return Some((n * CHUNK + i, "a control character that XML does not allow"));
        }
    }
    let mut at = 0;
    while let Some(i) = memchr(0xEF, &bytes[at..]) {
        let i = at + i;
        if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) {
            return Some((i, "the non-character U+FFFE or U+FFFF"));
        }
        at = i + 1;
    }
    None
}
