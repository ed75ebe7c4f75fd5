use super::*;

/// Every byte value at every position of a word, with name bytes around it.
fn words() -> impl Iterator<Item = (u64, usize, u8)> {
    (0..8).flat_map(|at| {
        (0..=255u8).map(move |b| {
            let mut bytes = *b"ab:-._9Z";
            bytes[at] = b;
            (u64::from_le_bytes(bytes), at, b)
        })
    })
}

#[test]
fn word_classification_agrees_with_the_byte_tables() {
    for (word, at, b) in words() {
        let (stops, colons) = classify_name_bytes(word);
        let bytes = word.to_le_bytes();
        for (k, &c) in bytes.iter().enumerate() {
            let bit = 0x80u64 << (8 * k);
            assert_eq!(
                stops & bit == 0,
                ASCII_NAME[c as usize],
                "byte {c:#x} at {k}"
            );
            if ASCII_NAME[c as usize] {
                assert_eq!(colons & bit != 0, c == b':', "byte {c:#x} at {k}");
            }
        }
        let found = bytes_equal(word, b);
        let want = bytes.iter().position(|&c| c == b);
        assert_eq!(
            (found != 0).then(|| found.trailing_zeros() as usize / 8),
            want,
            "{b:#x} at {at}"
        );
    }
}

#[test]
fn markup_is_found_at_every_offset() {
    for len in 0..80 {
        for at in 0..len {
            for stop in [b'<', b'&', b']'] {
                let mut text = vec![b'x'; len];
                text[at] = stop;
                assert_eq!(
                    find_markup(&text),
                    Some(at),
                    "{} at {at} of {len}",
                    stop as char
                );
            }
        }
        assert_eq!(find_markup(&vec![b'x'; len]), None);
    }
}

#[test]
fn short_comparison_agrees_with_slices() {
    let a: Vec<u8> = (0..40).collect();
    for n in 0..40 {
        assert!(same(&a[..n], &a[..n]));
        for k in 0..n {
            let mut b = a[..n].to_vec();
            b[k] ^= 1;
            assert!(!same(&a[..n], &b), "length {n}, byte {k}");
        }
        assert!(!same(&a[..n], &a[..n + 1]));
    }
}

#[test]
fn declaration_length_is_computed_right() {
    for (prefix, raw) in [("", "urn:x"), ("p", "urn:x"), ("pp", "a\"b\"c"), ("", "")] {
        let b = Binding {
            prefix: prefix.into(),
            raw: raw.into(),
            uri: raw.into(),
        };
        assert_eq!(declaration_len(&b), declaration(&b).len(), "{prefix} {raw}");
    }
}

#[test]
fn common_references_agree_with_the_full_check() {
    let names = [
        "amp",
        "lt",
        "gt",
        "quot",
        "apos",
        "#65",
        "#x41",
        "#x1D11E",
        "#1114111",
        "#1114112",
        "#0",
        "#x0",
        "#xD800",
        "#xFFFE",
        "#9",
        "#x",
        "#",
        "#X41",
        "#-1",
        "#99999999999",
        "ampx",
        "am",
        "nbsp",
        "#x10FFFF",
        "#x110000",
        "#0065",
        "quo",
        "aposx",
    ];
    for name in names {
        let text = format!("&{name};rest");
        let full = check_reference(name.as_bytes()).is_ok();
        match common_reference(text.as_bytes()) {
            Some(length) => {
                assert!(full, "{name} accepted by the fast path only");
                assert_eq!(length, name.len() + 2, "{name}");
            }
            None => assert!(!full, "{name}: well-formed but not recognised"),
        }
    }
}
